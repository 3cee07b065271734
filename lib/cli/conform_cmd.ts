/**
 * `mil conform --op OP --port "CMD"`: check a port against the references on random cases, shrink a failure
 * to the smallest case and print it (lib/conform/harness.ts; the protocol: docs/conform.md).
 * Exit status: 0 no case failed and at least one was checked, 1 a case failed, 2 bad usage, 5 nothing was
 * checked (the port answered 'unsupported' to every case: a port that supports nothing must not pass).
 */
import { checkPaths } from '../io/paths.js';
import { caseSize, conform, saveCase, stopPorts } from '../conform/harness.js';
import { UsageError, type Parsed } from './args.js';
import { EXIT } from './exit.js';

/** `mil conform`'s exit status when no case was checked: every case was unsupported. */
export const EXIT_NOTHING_CHECKED = EXIT.nothingChecked;

export async function cmdConform(p: Parsed): Promise<number> {
  const v = p.values;
  const op = v.op as string | undefined;
  const port = v.port as string | undefined;
  if (!op || !port) throw new UsageError('conform needs --op OP and --port "CMD"');
  if (port.trim() === '') throw new UsageError('--port is empty');
  const save = v.save as string | undefined;
  if (save)
    checkPaths({ command: 'conform', inputs: [], outputs: [{ option: 'save', path: save }], force: v.force === true });
  const json = v.json === true;
  const o = {
    op,
    port,
    runs: (v.runs as number) ?? 100,
    seed: (v.seed as number) ?? 0,
    tolerance: (v.tolerance as number) ?? 1e-4,
    timeoutMs: (v.timeout as number) ?? 20000,
    failFast: v['fail-fast'] === true,
  };
  // Ctrl-C or SIGTERM: the port's process group and the case folder go too (exit 130 / 143)
  for (const [sig, code] of [
    ['SIGINT', EXIT.interrupted],
    ['SIGTERM', EXIT.terminated],
  ] as const)
    process.once(sig, () => {
      stopPorts();
      process.exit(code);
    });
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
      },
    );
  if (json)
    console.log(
      JSON.stringify({
        ...rep,
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
      `${op}: ${rep.passed} passed, ${rep.failed} failed, ${rep.unsupported} unsupported of ${rep.runs} cases (seed ${o.seed}, tolerance ${o.tolerance})${rep.unsupported ? `; unsupported: ${rep.unsupportedReason}` : ''}`,
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
      if (s.verdict.worst)
        console.log(
          `  worst element: ${s.verdict.worst.output}[${s.verdict.worst.index}] = ${s.verdict.worst.got}, reference ${s.verdict.worst.want}`,
        );
      if (save)
        console.log(
          `  saved to ${save} (mil golden verify reads it; case.json + case.safetensors + expected.safetensors for the port)`,
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
