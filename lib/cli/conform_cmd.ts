/**
 * `mil conform --op OP --port "CMD"`: check a port against the references on random cases, shrink a failure
 * to the smallest case and print it (lib/conform/harness.ts; the protocols: docs/conform.md).
 * `mil conform --replay DIR --port "CMD"`: rerun a case saved with `--save DIR` and print its verdict beside
 * the saved one.
 * Exit status: 0 no case failed and at least one was checked, 1 a case failed, 2 bad usage, 5 nothing was
 * checked (the port answered 'unsupported' to every case: a port that supports nothing must not pass).
 */
import { checkPaths } from '../io/paths.js';
import {
  caseSize,
  conform,
  replay,
  saveCase,
  stopPorts,
  type Protocol,
  type Tolerance,
  type Verdict,
} from '../conform/harness.js';
import { UsageError, type Parsed } from './args.js';
import { EXIT } from './exit.js';

/** `mil conform`'s exit status when no case was checked: every case was unsupported. */
const EXIT_NOTHING_CHECKED = EXIT.nothingChecked;

const worstLine = (v: Verdict) =>
  v.worst ? `  worst element: ${v.worst.output}[${v.worst.index}] = ${v.worst.got}, reference ${v.worst.want}` : '';

/** Ctrl-C or SIGTERM: the port's process group and the case folders go too (exit 130 / 143). */
function onInterrupt(): void {
  for (const [sig, code] of [
    ['SIGINT', EXIT.interrupted],
    ['SIGTERM', EXIT.terminated],
  ] as const)
    process.once(sig, () => {
      stopPorts();
      process.exit(code);
    });
}

async function cmdReplay(p: Parsed, dir: string, port: string): Promise<number> {
  const v = p.values;
  for (const k of ['op', 'runs', 'seed', 'save', 'fail-fast'])
    if (v[k] !== undefined) throw new UsageError(`--${k} does not go with --replay (the saved case is rerun as saved)`);
  onInterrupt();
  const r = await replay(dir, {
    port,
    protocol: v.protocol as Protocol | undefined,
    timeoutMs: v.timeout as number | undefined,
    tolerance: { rtol: v.rtol as number | undefined, atol: v.atol as number | undefined },
  });
  const same = r.verdict.status === r.saved.verdict.status;
  if (v.json === true)
    console.log(JSON.stringify({ dir, op: r.saved.op, verdict: r.verdict, saved: r.saved.verdict, same }));
  else {
    console.log(
      `${r.saved.op} (replay of ${dir}; rtol ${r.tolerance.rtol}, atol ${r.tolerance.atol}, timeout ${r.timeoutMs} ms): ${r.verdict.status}${r.verdict.reason ? ` — ${r.verdict.reason}` : ''}`,
    );
    console.log(
      `  saved verdict: ${r.saved.verdict.status}${r.saved.verdict.reason ? ` — ${r.saved.verdict.reason}` : ''}${same ? '' : ' (this run differs)'}`,
    );
    const w = worstLine(r.verdict);
    if (w) console.log(w);
  }
  return r.verdict.status === 'fail'
    ? EXIT.checkFailed
    : r.verdict.status === 'unsupported'
      ? EXIT_NOTHING_CHECKED
      : EXIT.ok;
}

export async function cmdConform(p: Parsed): Promise<number> {
  const v = p.values;
  const op = v.op as string | undefined;
  const port = v.port as string | undefined;
  const replayDir = v.replay as string | undefined;
  if (port !== undefined && port.trim() === '') throw new UsageError('--port is empty');
  if (replayDir !== undefined) {
    if (!port) throw new UsageError('conform --replay DIR needs --port "CMD"');
    return cmdReplay(p, replayDir, port);
  }
  if (!op || !port) throw new UsageError('conform needs --op OP and --port "CMD" (or --replay DIR --port "CMD")');
  const save = v.save as string | undefined;
  if (save)
    checkPaths({ command: 'conform', inputs: [], outputs: [{ option: 'save', path: save }], force: v.force === true });
  const json = v.json === true;
  const tolerance: Partial<Tolerance> = { rtol: v.rtol as number | undefined, atol: v.atol as number | undefined };
  const o = {
    op,
    port,
    runs: (v.runs as number) ?? 100,
    seed: (v.seed as number) ?? 0,
    tolerance,
    timeoutMs: (v.timeout as number) ?? 20000,
    protocol: (v.protocol as Protocol | undefined) ?? 'files',
    failFast: v['fail-fast'] === true,
  };
  onInterrupt();
  const rep = await conform({
    ...o,
    onCase: (n, _c, verdict) => {
      if (!json)
        process.stderr.write(
          `\rcase ${n}/${o.runs}: ${verdict.status}${verdict.status === 'fail' ? ` — ${verdict.reason}\n` : '   '}`,
        );
    },
  });
  if (!json) process.stderr.write('\n');
  const s = rep.smallest;
  const size = s ? caseSize(s.case) : undefined;
  if (s && save)
    saveCase(
      save,
      s.case,
      `smallest failing case of mil conform --op ${op} --port ${JSON.stringify(port)} --seed ${o.seed}: ${s.verdict.reason}`,
      {
        option: 'save',
        replay: {
          draw: s.draw,
          tolerance: rep.tolerance,
          timeoutMs: o.timeoutMs,
          protocol: o.protocol,
          port,
          verdict: { status: s.verdict.status, reason: s.verdict.reason, timedOutMs: s.verdict.timedOutMs },
        },
      },
    );
  if (json)
    console.log(
      JSON.stringify({
        ...rep,
        first: rep.first ? { shapes: caseSize(rep.first.case).shapes, drawn: rep.first.draw } : undefined,
        smallest: s
          ? {
              shapes: size!.shapes,
              largestDim: size!.largestDim,
              attrs: s.case.attrs,
              verdict: s.verdict,
              shrinkSteps: s.shrinkSteps,
              drawn: s.draw,
            }
          : undefined,
      }),
    );
  else {
    console.log(
      `${op}: ${rep.passed} passed, ${rep.failed} failed, ${rep.unsupported} unsupported of ${rep.runs} cases (seed ${o.seed}, rtol ${rep.tolerance.rtol}, atol ${rep.tolerance.atol}, ${o.protocol} protocol)${rep.unsupported ? `; unsupported: ${rep.unsupportedReason}` : ''}`,
    );
    if (s) {
      console.log(`first failure at case ${rep.firstFailureAt}; shrunk in ${s.shrinkSteps} further runs to:`);
      console.log(
        `  inputs: ${Object.entries(size!.shapes)
          .map(([k, sh]) => `${k} [${sh.join(', ')}]`)
          .join(', ')}`,
      );
      const attrs = Object.fromEntries(
        Object.entries(s.case.attrs).filter(([k]) => k !== 'layout' && k !== 'target' && k !== 'draft'),
      );
      console.log(
        `  attrs: ${JSON.stringify(attrs)}; magnitudes: ${JSON.stringify(Object.fromEntries(Object.entries(s.draw.scale).filter(([, f]) => f !== 1)))}`,
      );
      console.log(`  the port: ${s.verdict.reason}`);
      const w = worstLine(s.verdict);
      if (w) console.log(w);
      if (save)
        console.log(
          `  saved to ${save}; rerun it: mil conform --replay ${save} --port ${JSON.stringify(port)} (case.json + case.safetensors are what the port read, expected.safetensors the reference${op === 'model' ? '' : `; mil golden verify ${save} checks this project's backends on it`})`,
        );
    }
  }
  if (rep.failed > 0) return EXIT.checkFailed;
  if (rep.passed === 0) {
    console.error(
      `${op}: nothing was checked — the port answered unsupported to all ${rep.runs} cases (exit ${EXIT_NOTHING_CHECKED})`,
    );
    return EXIT_NOTHING_CHECKED;
  }
  return EXIT.ok;
}
