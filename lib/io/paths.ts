/**
 * The output-path guard: every writing command (train, distill, sft, dpo, convert, init, golden emit,
 * conform --save, tokenizer train — and `npm run paper`, which runs them) calls `checkPaths` before any work,
 * with every path it reads and every path it will write or delete, derived names included (OUT.checkpoint,
 * OUT.stageN, OUT.stageN.checkpoint). It refuses, naming both paths:
 *
 *   1. an output that is, contains or lies inside an input (ArgumentError, exit 2): a teacher folder placed at
 *      OUT.checkpoint or OUT.stage1 would be deleted or overwritten; --out equal to --teacher/--model/--data;
 *      an input named like one of the writer's temporaries of an output (`.NAME.mil-*` beside it);
 *   2. an existing, non-empty folder at an output that is not this command's own earlier output
 *      (OutputExistsError, exit 2) unless `--force`: an unrelated model folder is never replaced silently.
 *
 * How a folder is recognised as the command's own: the marker `.mil-output.json` ({"writtenBy": "mil CMD"}),
 * which the one writer puts in every folder a guarded command writes (`markOutputs` below, read by
 * writeFolder), matching the command. For folders written before the marker existed: a training run's
 * training.json whose `command` starts with `mil CMD `, a Trainer checkpoint (trainer.json) at a derived
 * checkpoint path, and for `golden emit` a golden folder or model case (kernels.json, models/ or golden.json). An empty folder is free.
 * Then each output gets the writer's own checks (`checkOutput`: writable, not of the other kind, not locked).
 */
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { ArgumentError, MilError } from '../errors.js';
import { OUTPUT_MARKER, checkOutput, markOutputs } from './writer.js';

export { OUTPUT_MARKER };

/** A path a command reads or writes, with the option that names it (and, for a derived one, how). */
export interface PathUse {
  /** the option naming the path (or the one it is derived from), without dashes: 'out', 'teacher' */
  option: string;
  path: string;
  /** outputs: a derived name, said in messages ('its checkpoint') */
  derived?: string;
  /** outputs: a folder (default) or a single file */
  kind?: 'folder' | 'file';
}

export interface PathPlan {
  /** the command, as typed after `mil`: 'convert', 'golden emit' */
  command: string;
  /** every path the command reads ('sotu' and other built-in names are left out by the caller) */
  inputs: PathUse[];
  /** every path it writes or deletes */
  outputs: PathUse[];
  /** --force: replace an existing folder that is not this command's earlier output */
  force?: boolean;
  /** mark the folder outputs as this command's (default true; golden emit adds cases to a shared folder) */
  mark?: boolean;
}

/** The paths named by `options` among a command's parsed values (--data's built-in corpus 'sotu' is no path). */
export function optionPaths(values: Record<string, unknown>, options: string[]): PathUse[] {
  const out: PathUse[] = [];
  for (const option of options) {
    const path = values[option];
    if (typeof path === 'string' && !(option === 'data' && path === 'sotu')) out.push({ option, path });
  }
  return out;
}

/** The checkpoint folder of a training job writing OUT (lib/train/job.ts): OUT.checkpoint. */
export const checkpointOf = (out: string): string => `${out}.checkpoint`;
/** The folder of stage k (1-based) of a stepwise distillation writing OUT, but for its last: OUT.stageK. */
export const stageOf = (out: string, k: number): string => `${out}.stage${k}`;

/**
 * What a training job (lib/train/job.ts, runJob) writes or deletes for --out OUT: OUT, and OUT.checkpoint
 * (saved while it trains, removed at the end).
 */
export function jobOutputs(out: string, option = 'out', derived?: string): PathUse[] {
  return [
    { option, path: out, ...(derived ? { derived } : {}) },
    { option, path: checkpointOf(out), derived: `${derived ? `${derived}'s` : 'its'} checkpoint` },
  ];
}

/** --out names an existing folder that this command did not write. */
export class OutputExistsError extends MilError {
  constructor(
    readonly path: string,
    readonly option: string,
    readonly command: string,
    readonly found: string,
  ) {
    super(
      'E_OUTPUT_EXISTS',
      `--${option} ${path}: expected a new folder, an empty one or an earlier output of mil ${command}, got an existing folder ${found}; choose another folder or pass --force to replace it`,
    );
  }
}

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    // not there yet: resolve the nearest existing ancestor, so symlinked parents compare equal
    const parent = dirname(resolve(p));
    return parent === resolve(p) ? resolve(p) : join(real(parent), basename(p));
  }
}

const label = (o: PathUse) => `--${o.option}${o.derived ? ` (${o.derived} ${o.path})` : ''}`;

/** Why `dir` (an existing folder) counts as an earlier output of `command`, or undefined if it does not. */
function ownOutput(dir: string, command: string, derived = false): string | undefined {
  const entries = readdirSync(dir);
  if (entries.length === 0) return 'empty';
  const json = (f: string): Record<string, unknown> | undefined => {
    try {
      const j: unknown = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      return j && typeof j === 'object' ? (j as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  };
  // a Trainer checkpoint at a derived name: whose run it is, the run record decides at resume (naming both runs)
  if (derived && entries.includes('trainer.json')) return 'checkpoint';
  if (entries.includes(OUTPUT_MARKER)) {
    const by = json(OUTPUT_MARKER)?.writtenBy;
    return by === `mil ${command}` ? 'marker' : undefined;
  }
  const cmd = json('training.json')?.command;
  if (typeof cmd === 'string' && cmd.startsWith(`mil ${command} `)) return 'training.json';
  if (command === 'golden emit' && ['kernels.json', 'models', 'golden.json'].some((f) => entries.includes(f)))
    return 'golden';
  return undefined;
}

function describe(dir: string): string {
  const e = readdirSync(dir).sort();
  const named = e.includes(OUTPUT_MARKER)
    ? `written by ${String((JSON.parse(readFileSync(join(dir, OUTPUT_MARKER), 'utf8')) as { writtenBy?: unknown }).writtenBy)}`
    : `without ${OUTPUT_MARKER}`;
  return `(${named}; holding ${e.slice(0, 4).join(', ')}${e.length > 4 ? `, … ${e.length} entries` : ''})`;
}

/**
 * Check a command's paths before any work (see the top of this file); on success, register its folder
 * outputs so the writer marks them as this command's. Throws ArgumentError or OutputExistsError (exit 2),
 * or the writer's IoError / OutputLockedError for an unwritable or locked output.
 */
export function checkPaths(plan: PathPlan): void {
  const inputs = plan.inputs.map((i) => ({ ...i, real: real(i.path) }));
  for (const o of plan.outputs) {
    const t = real(o.path);
    for (const i of inputs) {
      const what =
        t === i.real
          ? 'is'
          : i.real.startsWith(t + sep)
            ? 'contains'
            : t.startsWith(i.real + sep)
              ? 'lies inside'
              : dirname(t) === dirname(i.real) && basename(i.real).startsWith(`.${basename(t)}.mil-`)
                ? "is beside, named as the writer's temporary of,"
                : undefined;
      if (what)
        throw new ArgumentError(
          `--${o.option}`,
          `a path apart from --${i.option} (${i.path}), which mil ${plan.command} reads`,
          `${label(o)}, which ${what} ${i.path}`,
        );
    }
  }
  for (const o of plan.outputs) {
    const kind = o.kind ?? 'folder';
    if (kind === 'folder' && existsSync(o.path) && statSync(o.path).isDirectory() && !plan.force) {
      if (!ownOutput(o.path, plan.command, o.derived !== undefined))
        throw new OutputExistsError(o.path, o.option, plan.command, describe(o.path));
    }
    checkOutput(o.path, kind, { option: o.option });
  }
  // replaces what an earlier command of this process registered (none, with mark: false)
  markOutputs(
    plan.mark === false ? [] : plan.outputs.filter((o) => (o.kind ?? 'folder') === 'folder').map((o) => o.path),
    plan.command,
  );
}
