/**
 * Child of bench/realsize.ts, one measurement per process (so its peak RSS is that measurement's alone):
 *   node --import tsx bench/realsize_child.ts '{"model":DIR,"backend":"wasm-simd","threads":1,"prompt":300,"context":2048,"decode":8}'
 * loads the model (timed; refused from the headers with a MemoryError when it cannot fit the backend), then
 * greedy-decodes `decode` tokens after a `prompt`-token prompt and again after a `context`-token one (the
 * prompt ids (i·7919) mod V, as bench/torch_decode.py). Prints one JSON line: { fits, reason?, loadS,
 * prefillTokPerS, decodeMsShort, prefillLongTokPerS, decodeMsLong, tokens, maxRSS (bytes: the process's peak, VmHWM) }.
 */
import { readFileSync } from 'node:fs';
import { loadModel, MemoryError } from '../lib/model/load.js';
import { getOps, type BackendName } from '../lib/ops.js';
import { generate } from '../lib/model/generate.js';
import { SimdGemm } from '../lib/simd/gemm.js';

const job = JSON.parse(process.argv[2] ?? '{}') as {
  model: string;
  backend: BackendName;
  threads: number;
  prompt: number;
  context: number;
  decode: number;
};
/** The peak RSS of this process: VmHWM (getrusage's maxRSS carries over the forked parent's peak across exec). */
const rss = () => {
  const hwm = /VmHWM:\s*(\d+) kB/.exec(process.platform === 'linux' ? readFileSync('/proc/self/status', 'utf8') : '');
  return 1024 * (hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS);
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
const ops = await getOps(job.backend);
const ids = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919) % m.llama.vocabSize);
const run = (n: number) => generate(ops, m, ids(n), { maxNewTokens: job.decode + 1, eos: [] });
const short = await run(job.prompt);
const long = job.context > 0 ? await run(job.context) : undefined;
console.log(
  JSON.stringify({
    fits: true,
    loadS,
    prefillTokPerS: short.prefill.tokensPerS,
    decodeMsShort: short.decode.ms / short.decode.tokens,
    prefillLongTokPerS: long?.prefill.tokensPerS,
    decodeMsLong: long ? long.decode.ms / long.decode.tokens : undefined,
    tokens: short.tokens,
    maxRSS: rss(),
  }),
);
process.exit(0);
