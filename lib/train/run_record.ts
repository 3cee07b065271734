/**
 * The run record a training checkpoint carries (OUT.checkpoint/run.json), checked before a run resumes, and
 * what is done with a checkpoint that cannot be resumed.
 *
 * A run's identity — what makes its steps the steps they are:
 *   command    'train', 'distill stage 2', 'sft' … (JobOptions.command)
 *   options    the trainer options (objective and its weights, optimizer and learning rate, clipping, batch,
 *              length, accumulation, seed, which parameters train, engine) — all but totalSteps/warmupSteps
 *   start      sha256 of the model the run starts from (its config and every weight): --config, --model,
 *              --attention, --variant, --init, --seed's initialisation all end up here
 *   teacher    sha256 of the teacher (config and weights), or null
 *   data       sha256 of the training and validation token streams (--data, its split, the tokenizer's ids)
 *   tokenizer  sha256 of the tokenizer's tokenizer.json
 * config = sha256 of { command, options, start, teacher }; run.json holds it with the parts in clear, the
 * command line that made the checkpoint, its step and its total steps.
 *
 * What may change when a run resumes (not part of the identity): --steps / --tokens (the run goes on to the new
 * total — refused if the checkpoint is already past it — and the cosine schedule follows the new total from the
 * next step), --save-every, --eval-every, --eval-tokens, --dtype, --threads, --quiet, --max-minutes, --max-shard-size.
 *
 * A checkpoint is resumed only when it is whole and belongs to this run:
 *   partial   a file missing (trainer.json, run.json, history.json, config.json, model.safetensors,
 *             optimizer.safetensors), a JSON file that does not parse, a safetensors file whose header does not
 *             describe its size (truncated) — what a killed or failing copy leaves, or a checkpoint of a mil
 *             without run records: set aside as OUT.checkpoint.partial-<UTC time> (kept, with a note on stderr),
 *             and the run starts afresh (`setAside`)
 *   foreign   whole, but made by another command, options, start model, teacher, data or tokenizer: refused
 *             (CheckpointError, exit 2) naming both runs and what differs (`checkResume`)
 *   bad step  run.json's step not an integer in 0 … its total steps, or not the step trainer.json,
 *             optimizer.safetensors and history.json's rows show (an edited step): refused the same way
 */
import { createHash } from 'node:crypto';
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonObject } from '../io/json.js';
import { readSafetensorsHeader } from '../io/safetensors.js';
import { IoError } from '../io/writer.js';
import type { HybridModel } from '../model/hybrid.js';
import type { BpeTokenizer } from '../text/bpe.js';
import { CheckpointError, type TrainerOptions } from './trainer.js';

export const RUN_FILE = 'run.json';
const RUN_FORMAT = 'mil-run/1';
/** The files a whole checkpoint holds. */
const CHECKPOINT_FILES = [
  'trainer.json',
  RUN_FILE,
  'history.json',
  'config.json',
  'model.safetensors',
  'optimizer.safetensors',
];

export interface RunIdentity {
  command: string;
  /** the command line, for messages (not compared) */
  invocation: string;
  options: Record<string, unknown>;
  start: string;
  teacher: string | null;
  data: string;
  tokenizer: string;
}

export interface RunRecord extends RunIdentity {
  format: typeof RUN_FORMAT;
  config: string;
  step: number;
  totalSteps: number;
}

/** JSON with every object's keys sorted (a stable text to hash and compare). */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/** sha256 of a model: its configs and every weight's name, dtype, shape and values. */
function hashModel(m: HybridModel): string {
  const h = createHash('sha256');
  h.update(canonical({ llama: m.llama, mamba: m.mamba ?? null }));
  for (const n of [...m.weights.names()].sort()) {
    const t = m.weights.get(n); // (the weight's shape)
    h.update(`\n${n} ${t.dtype} ${t.shape.join('x')}\n`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

/** sha256 of token streams (each as int32 values, with its length). */
function hashTokens(...streams: ReadonlyArray<readonly number[]>): string {
  const h = createHash('sha256');
  for (const s of streams) {
    h.update(`${s.length}\n`);
    h.update(new Uint8Array(Int32Array.from(s).buffer));
  }
  return h.digest('hex');
}

/** The identity of a run about to start (or resume). */
export function runIdentity(o: {
  command: string;
  invocation: string;
  trainer: TrainerOptions;
  model: HybridModel;
  teacher?: HybridModel;
  tokens: readonly number[];
  valTokens: readonly number[];
  tokenizer: BpeTokenizer;
}): RunIdentity {
  const options: Record<string, unknown> = { ...o.trainer };
  delete options.totalSteps; // may change on resume
  delete options.warmupSteps;
  return {
    command: o.command,
    invocation: o.invocation,
    options: JSON.parse(canonical(options)) as Record<string, unknown>,
    start: hashModel(o.model),
    teacher: o.teacher ? hashModel(o.teacher) : null,
    data: hashTokens(o.tokens, o.valTokens),
    tokenizer: createHash('sha256').update(o.tokenizer.toJson()).digest('hex'),
  };
}

const configOf = (id: RunIdentity) =>
  createHash('sha256')
    .update(canonical({ command: id.command, options: id.options, start: id.start, teacher: id.teacher }))
    .digest('hex');

/** The record a checkpoint at `step` of a run of `totalSteps` carries. */
export function runRecord(id: RunIdentity, step: number, totalSteps: number): RunRecord {
  return { format: RUN_FORMAT, ...id, config: configOf(id), step, totalSteps };
}

export type CheckpointState =
  | { kind: 'none' }
  | { kind: 'partial'; why: string }
  | {
      kind: 'whole';
      record: Record<string, unknown>;
      trainer: Record<string, unknown>;
      history: unknown[];
      optimizerStep: string | undefined;
    };

/** What is at `dir`: nothing, a partial checkpoint (and why), or a whole one (its parts read, not yet checked). */
export function inspectCheckpoint(dir: string): CheckpointState {
  if (!existsSync(dir)) return { kind: 'none' };
  for (const f of CHECKPOINT_FILES)
    if (!existsSync(join(dir, f)))
      return { kind: 'partial', why: f === RUN_FILE ? `no ${f} (no run record: made by an older mil)` : `no ${f}` };
  try {
    const record = readJsonObject(join(dir, RUN_FILE));
    const trainer = readJsonObject(join(dir, 'trainer.json'));
    const history = readJsonObject(join(dir, 'history.json')).rows;
    readJsonObject(join(dir, 'config.json'));
    readSafetensorsHeader(join(dir, 'model.safetensors'));
    const optimizerStep = readSafetensorsHeader(join(dir, 'optimizer.safetensors')).metadata.step;
    if (!Array.isArray(history)) return { kind: 'partial', why: 'history.json has no rows' };
    return { kind: 'whole', record, trainer, history, optimizerStep };
  } catch (e) {
    return { kind: 'partial', why: (e as Error).message };
  }
}

/**
 * Refuse (CheckpointError, exit 2) a whole checkpoint at `dir` that is not this run's (`asked`), whose step is
 * not consistent, or that is past `totalSteps` (this run's total); returns its record otherwise.
 */
export function checkResume(
  dir: string,
  c: Extract<CheckpointState, { kind: 'whole' }>,
  asked: RunIdentity,
  totalSteps: number,
): RunRecord {
  const r = c.record as Partial<RunRecord>;
  if (r.format !== RUN_FORMAT)
    throw new CheckpointError(join(dir, RUN_FILE), `format is ${JSON.stringify(r.format)}, expected '${RUN_FORMAT}'`);
  const made = `\`${r.invocation ?? '?'}\` (${r.command ?? '?'}, step ${String(r.step)} of ${String(r.totalSteps)})`;
  const diffs: string[] = [];
  const short = (h: unknown) => (typeof h === 'string' ? `sha256 ${h.slice(0, 12)}…` : String(h));
  if (r.command !== asked.command) diffs.push(`command: ${String(r.command)} vs ${asked.command}`);
  const opts = r.options ?? {};
  for (const k of [...new Set([...Object.keys(opts), ...Object.keys(asked.options)])].sort())
    if (canonical(opts[k]) !== canonical(asked.options[k]))
      diffs.push(`option ${k}: ${canonical(opts[k]) ?? 'absent'} vs ${canonical(asked.options[k]) ?? 'absent'}`);
  if (r.start !== asked.start) diffs.push(`start model: ${short(r.start)} vs ${short(asked.start)}`);
  if (r.teacher !== asked.teacher) diffs.push(`teacher: ${short(r.teacher)} vs ${short(asked.teacher)}`);
  if (r.data !== asked.data) diffs.push(`data: ${short(r.data)} vs ${short(asked.data)}`);
  if (r.tokenizer !== asked.tokenizer) diffs.push(`tokenizer: ${short(r.tokenizer)} vs ${short(asked.tokenizer)}`);
  if (diffs.length === 0 && r.config !== configOf(asked))
    diffs.push(`config hash: ${short(r.config)} vs ${short(configOf(asked))}`);
  if (diffs.length > 0)
    throw new CheckpointError(
      dir,
      `belongs to another run: it was made by ${made}; this run is \`${asked.invocation}\` (${asked.command}). ` +
        `They differ in ${diffs.join('; ')}. Give another --out, or run the command that made it (remove ${dir} to discard its steps)`,
    );
  const step = r.step;
  const total = r.totalSteps;
  const bad = (why: string) => new CheckpointError(dir, `step ${JSON.stringify(step)} (${made}): ${why}; not resumed`);
  if (!Number.isInteger(total) || (total as number) < 1)
    throw bad(`its total steps ${JSON.stringify(total)} is not an integer >= 1`);
  if (!Number.isInteger(step) || (step as number) < 0 || (step as number) > (total as number))
    throw bad(`not an integer in 0 … ${total}`);
  const rows = c.history;
  const last = (rows.at(-1) as { step?: unknown } | undefined)?.step ?? 0;
  if (c.trainer.step !== step) throw bad(`trainer.json says step ${JSON.stringify(c.trainer.step)}`);
  if (c.optimizerStep !== String(step)) throw bad(`optimizer.safetensors says step ${String(c.optimizerStep)}`);
  if (rows.length !== step || last !== step)
    throw bad(`history.json has ${rows.length} rows, the last at step ${String(last)}`);
  if (step > totalSteps)
    throw new CheckpointError(
      dir,
      `is at step ${step}, past this run's ${totalSteps} steps: give --steps ${step} or more (it was made for ${total})`,
    );
  return r as RunRecord;
}

/** Move a partial checkpoint aside as `<dir>.partial-<UTC time>` (kept for inspection); returns the new path. */
export function setAside(dir: string, why: string, note: (line: string) => void): string {
  const to = `${dir}.partial-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  try {
    renameSync(dir, to);
  } catch (e) {
    throw new IoError(
      dir,
      'rename',
      (e as NodeJS.ErrnoException).code ?? String(e),
      `cannot set the partial checkpoint aside as ${to}`,
    );
  }
  note(`note: ${dir} is not a whole checkpoint (${why}): set aside as ${to}, starting afresh`);
  return to;
}
