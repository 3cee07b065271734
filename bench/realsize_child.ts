/**
 * Child of bench/realsize.ts, one measurement per process (so its peak RSS is that measurement's alone):
 *   node --import tsx bench/realsize_child.ts '{"model":DIR,"backend":"wasm-simd","threads":1,"prompt":300,"context":2048,"decode":8}'
 * loads the model (timed; refused from the headers with a MemoryError when it cannot fit the backend), then
 * greedy-decodes `decode` tokens after a `prompt`-token prompt and again after a `context`-token one (0: not
 * run) — the prompt ids (i·7919) mod V, as bench/torch_decode.py. Prints one JSON line: { fits, reason?,
 * loadS, prefillTokPerS, decodeMsShort, prefillLongTokPerS, decodeMsLong, tokens, maxRSS (bytes: the process's
 * peak, VmHWM), cpu: { load, prefill, decode } (CPU seconds of the whole process, every thread: on a shared
 * machine the wall time includes waiting for a core, the CPU time does not) }.
 * With "speculative": { draftLayers, K } it measures instead speculative decoding (lib/decode/compare.ts, the
 * same prompt, greedy, warmed up) with the model's own first `draftLayers` layers as the draft (truncateLayers:
 * the same tensors, no second copy in memory), printing { fits, loadS, spec: Comparison, cpu, maxRSS }.
 */
import { readFileSync } from 'node:fs';
import { loadModel, MemoryError } from '../lib/model/load.js';
import { ArgumentError } from '../lib/errors.js';
import { getOps, type BackendName } from '../lib/ops.js';
import { generate } from '../lib/model/generate.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { compareWithPlain } from '../lib/decode/compare.js';
import { truncateLayers } from '../lib/decode/drafts.js';
import { ModelDrafter } from '../lib/decode/speculative.js';

const job = JSON.parse(process.argv[2] ?? '{}') as {
  model: string;
  backend: BackendName;
  threads: number;
  prompt: number;
  context: number;
  decode: number;
  speculative?: { draftLayers: number; K: number };
};
/** The peak RSS of this process: VmHWM (getrusage's maxRSS carries over the forked parent's peak across exec). */
const rss = () => {
  const hwm = /VmHWM:\s*(\d+) kB/.exec(process.platform === 'linux' ? readFileSync('/proc/self/status', 'utf8') : '');
  return 1024 * (hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS);
};
/** CPU seconds (user + system, all threads) this process has used so far. */
const cpuS = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
if (job.backend === 'wasm-simd') SimdGemm.setSharedThreads(job.threads);
const t0 = performance.now();
let m;
try {
  m = loadModel(job.model, { backend: job.backend });
} catch (e) {
  if (!(e instanceof MemoryError)) throw e;
  console.log(JSON.stringify({ fits: false, reason: e.message, maxRSS: rss() }));
  process.exit(0);
}
const loadS = (performance.now() - t0) / 1000;
const cpuLoad = cpuS();
const ops = await getOps(job.backend);
const ids = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919) % m.llama.vocabSize);
if (job.speculative) {
  const { draftLayers, K } = job.speculative;
  const draft = truncateLayers(m, draftLayers);
  const c0 = cpuS();
  const spec = await compareWithPlain(ops, m, () => new ModelDrafter(ops, draft, K + 1, 'lazy'), [ids(job.prompt)], {
    K,
    maxNewTokens: job.decode,
  });
  console.log(JSON.stringify({ fits: true, loadS, spec, cpu: { load: cpuLoad, run: cpuS() - c0 }, maxRSS: rss() }));
  process.exit(0);
}
/** One greedy run; the CPU seconds of its prefill (up to the first token) and of its decode. */
const run = async (n: number) => {
  const c0 = cpuS();
  let c1 = 0;
  const r = await generate(ops, m, ids(n), {
    maxNewTokens: job.decode + 1,
    eos: [],
    onToken: () => {
      if (c1 === 0) c1 = cpuS();
    },
  });
  return { r, prefillCpuS: c1 - c0, decodeCpuS: cpuS() - c1 };
};
let short: Awaited<ReturnType<typeof run>>;
try {
  short = await run(job.prompt);
} catch (e) {
  // a backend whose kernels refuse this shape (webgpu where the one-submission decoder does not fit the adapter's
  // limits: the per-op path's products are capped at 2^24 elements): a row saying so, not a failed bench
  if (!(e instanceof ArgumentError)) throw e;
  console.log(JSON.stringify({ fits: false, reason: e.message, maxRSS: rss() }));
  process.exit(0);
}
const long = job.context > 0 ? await run(job.context) : undefined;
console.log(
  JSON.stringify({
    fits: true,
    loadS,
    prefillTokPerS: short.r.prefill.tokensPerS,
    decodeMsShort: short.r.decode.ms / short.r.decode.tokens,
    prefillLongTokPerS: long?.r.prefill.tokensPerS,
    decodeMsLong: long ? long.r.decode.ms / long.r.decode.tokens : undefined,
    tokens: short.r.tokens,
    // CPU seconds: loading, the prompt's prefill, and per decoded token (after the prompt)
    cpu: { load: cpuLoad, prefill: short.prefillCpuS, decodePerToken: short.decodeCpuS / short.r.decode.tokens },
    maxRSS: rss(),
  }),
);
process.exit(0);
