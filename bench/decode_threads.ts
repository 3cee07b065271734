/**
 * Ours decoding on a set number of SIMD threads, the child process of bench/models.ts (the thread count of the
 * wasm-simd backend is fixed per process, `SimdGemm.setSharedThreads`): greedy decoding of a saved model from
 * the bench's prompt, prefill in one forward, then NEW_TOKENS steps; the median ms/token of `--runs` runs.
 *
 * usage: node --import tsx bench/decode_threads.ts MODEL_DIR PROMPT_LEN NEW_TOKENS --threads=T [--runs=3]
 * prints one JSON line: {"ms_per_token": ..., "runs_ms": [...], "tokens": [...], "threads": T, "path": ...,
 * "split_ms_per_token", "products_ms_per_token"}: the last two from one more run with the one-row products timed
 * (what they take of a token; the rest is the step's other work).
 */
import { loadModel } from '../lib/model/load.js';
import { generate } from '../lib/model/generate.js';
import { getOps } from '../lib/ops.js';
import { SimdGemm } from '../lib/simd/gemm.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const opt = (name: string, dflt: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const threads = Number(opt('threads', '1'));
const runs = Number(opt('runs', '3'));
SimdGemm.setSharedThreads(threads);
const m = loadModel(args[0]);
const vocab = m.llama.vocabSize;
const prompt = Array.from({ length: Number(args[1]) }, (_, i) => (i * 7919) % vocab); // bench/models.ts's prompt
const ops = await getOps('wasm-simd');
await generate(ops, m, prompt.slice(0, 4), { maxNewTokens: 2, eos: [] }); // packs the weights, tiers up
const ms: number[] = [];
let last;
for (let r = 0; r < runs; r++) {
  last = await generate(ops, m, prompt, { maxNewTokens: Number(args[2]), eos: [] });
  ms.push(last.decode.ms / last.decode.tokens);
}
// where a token's time goes: one more run with every one-row product (SimdGemm.linear and linearMany with M = 1:
// decode's, not the prefill's) timed; the rest of the step is norms, RoPE, attention over the cache, copies
const g = SimdGemm.shared();
const linear = g.linear.bind(g);
const linearMany = g.linearMany.bind(g);
let productsMs = 0;
const timed =
  <A extends unknown[], R>(f: (...a: A) => R) =>
  (...a: A): R => {
    if (a[1] !== 1) return f(...a);
    const t = performance.now();
    const y = f(...a);
    productsMs += performance.now() - t;
    return y;
  };
g.linear = timed(linear);
g.linearMany = timed(linearMany);
const split = await generate(ops, m, prompt, { maxNewTokens: Number(args[2]), eos: [] });
g.linear = linear;
g.linearMany = linearMany;
const sorted = [...ms].sort((a, b) => a - b);
console.log(
  JSON.stringify({
    ms_per_token: sorted[Math.floor(runs / 2)],
    runs_ms: ms,
    tokens: last?.tokens,
    threads,
    path: last?.path,
    split_ms_per_token: split.decode.ms / split.decode.tokens,
    products_ms_per_token: productsMs / split.decode.tokens,
  }),
);
process.exit(0);
