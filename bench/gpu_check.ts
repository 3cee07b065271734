/**
 * `node dist/bench/gpu_check.js` on the GPU machine: the one-submission decoder's logits against the float64
 * reference on a real GPU — what spec/gpu_decode.spec.ts and spec/gpu_verify.spec.ts check on Dawn's CPU adapter,
 * where CI runs (a CPU rasteriser executes one workgroup at a time and may differ from a GPU in what an
 * out-of-range read returns). For each model (the shipped trained hybrids when --models is given, random tiny
 * Llama / Mamba-2 / Mamba-1 hybrids): the prompt but its last token prefilled, then
 *   step    the reference's greedy continuation fed one token at a time (GpuDecoder.step with logits)
 *   window  the same tokens as one VERIFY window (GpuDecoder.verify with logits: every draft is the reference's
 *           greedy id, so all are accepted) of K + 1 rows
 * and prints, per row, the largest |gpu − reference| over the vocabulary divided by the reference's largest |logit|,
 * and whether the greedy id agrees. Exit 1 when any row is above --tol (default 1e-4).
 *   node --import tsx bench/gpu_check.ts [--models DIR] [--read-prompts FILE] [--k 8] [--tol 1e-4]
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { getOps } from '../lib/ops.js';
import { loadModel } from '../lib/model/load.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { randomLlama } from '../lib/model/random.js';
import { convert } from '../lib/model/convert.js';
import { GpuDecoder } from '../lib/model/gpu_decode.js';
import { Rng } from '../lib/rng.js';
import { getRuntime } from '../kernels/runtime.js';
import { Tensor } from '../lib/tensor.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string' },
    'read-prompts': { type: 'string' },
    k: { type: 'string', default: '8' },
    tol: { type: 'string', default: '1e-4' },
  },
});
const K = Number(values.k);
const TOL = Number(values.tol);
const ref = await getOps('reference');
const gpuOps = await getOps('webgpu');

const models: Array<[string, HybridModel, number[]]> = [];
const prompts = values['read-prompts'] ? (JSON.parse(readFileSync(values['read-prompts'], 'utf8')) as number[][]) : [];
if (values.models)
  for (const n of ['teacher-small', 'draft-small', 'hybrid-mamba2-50', 'hybrid-mamba2-0'])
    for (const [i, p] of prompts.slice(0, 2).entries())
      models.push([`${n} prompt ${i}`, loadModel(join(values.models, n)), p]);
const spec = { vocab: 64, hidden: 32, intermediate: 96, layers: 4, heads: 4, kvHeads: 2, headDim: 8 };
const teacher = randomLlama(spec, 5);
const r = new Rng(3);
const rp = Array.from({ length: 12 }, () => r.int(0, spec.vocab - 1));
models.push(['random Llama', teacher, rp]);
for (const variant of ['mamba2', 'mamba1'] as const)
  for (const f of [0.5, 0])
    models.push([`random ${variant} ${f * 100}%`, convert(teacher, { variant, attentionFraction: f, seed: 2 }), rp]);

/** max |a − b| / max |b| over one row, and whether the argmaxes agree */
const compare = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let [e, s, ia, ib] = [0, 0, 0, 0];
  for (let i = 0; i < b.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
    if (a[i] > a[ia]) ia = i;
    if (b[i] > b[ib]) ib = i;
  }
  return { rel: e / s, same: ia === ib };
};

// float32 index arithmetic: GPU.js kernels split a thread index by Math.floor(x / R), exact when division is
// correctly rounded (Dawn's CPU adapter) — WGSL allows 2.5 ULP, and an exact multiple k·R may come out just below k
/** How many of got[x] (x = 0 …) are not x mod R, and the first such x (−1: none). */
function wrongRemainders(got: Float32Array, R: number): { wrong: number; first: number } {
  let wrong = 0;
  let first = -1;
  for (let x = 0; x < got.length; x++)
    if (got[x] !== x % R) {
      wrong++;
      if (first < 0) first = x;
    }
  return { wrong, first };
}
const rt = await getRuntime('webgpu');
{
  // every divisor R in 2 … 2048, x < 2^16: how many x give x − floor(x / R)·R ≠ x mod R (R an argument: one kernel)
  const n = 1 << 16;
  const bad: string[] = [];
  let total = 0;
  for (let R = 2; R <= 2048; R++) {
    const got = await rt.run(
      'check.idiv',
      'function (r) { const x = this.thread.x; return x - Math.floor(x / r[0]) * r[0]; }',
      {},
      n,
      [Float32Array.of(R)],
    );
    const { wrong, first } = wrongRemainders(got, R);
    total += wrong;
    if (wrong) bad.push(`${R} (${wrong}, first x = ${first})`);
  }
  console.log(
    `x mod R as x − floor(x / R)·R, R = 2 … 2048, x < 2^16: ${total} wrong in ${bad.length} divisors${bad.length ? `: ${bad.slice(0, 30).join(', ')}` : ''}`,
  );
}

{
  // the same with R a kernel constant (a literal in the WGSL, which a compiler may turn into a multiplication by 1/R)
  const bad: string[] = [];
  const Rs = [
    3, 5, 6, 7, 12, 25, 97, 100, 129, 192, 257, 384, 388, 768, 1408, 1536, 2048, 2176, 2564, 4100, 6144, 32000,
  ];
  for (const R of Rs) {
    const n = 1 << 20;
    const got = await rt.run(
      'check.idiv_const',
      'function () { const x = this.thread.x; return x - Math.floor(x / this.constants.R) * this.constants.R; }',
      { R },
      n,
      [],
    );
    const { wrong, first } = wrongRemainders(got, R);
    if (wrong) bad.push(`${R} (${wrong}, first x = ${first}: ${got[first]})`);
  }
  console.log(
    `the same with R a constant, R in ${Rs.join(' ')}, x < 2^20: wrong for ${bad.length ? bad.join(', ') : 'none'}`,
  );
}

let worst = 0;
for (const [name, m, prompt] of models) {
  const V = m.llama.vocabSize;
  // the reference: greedy continuation of K tokens after the prompt, and the logits of each row
  const cache = newCache(m, 1);
  let logits = (await forward(ref, m, [prompt], cache)).data;
  const rows: Float64Array[] = [Float64Array.from(logits.subarray(logits.length - V))];
  const cont: number[] = [];
  for (let k = 0; k < K; k++) {
    const last = rows[rows.length - 1];
    let a = 0;
    for (let i = 1; i < V; i++) if (last[i] > last[a]) a = i;
    cont.push(a);
    logits = (await forward(ref, m, [[a]], cache)).data;
    rows.push(Float64Array.from(logits)); // (V)
  }
  const dec = await GpuDecoder.create(m, { capacity: prompt.length + K + 8 });
  try {
    const line = (path: string, got: ArrayLike<number>[]) => {
      const c = got.map((g, t) => compare(g, rows[t]));
      worst = Math.max(worst, ...c.map((x) => x.rel));
      console.log(
        `${name.padEnd(28)} ${path.padEnd(7)} ${c.map((x) => `${x.rel.toExponential(1)}${x.same ? '' : '!'}`).join(' ')}`,
      );
    };
    dec.reset();
    if (prompt.length > 1) await dec.prefill(prompt.slice(0, -1));
    const stepRows: Float32Array[] = [];
    for (const id of [prompt[prompt.length - 1], ...cont])
      stepRows.push((await dec.step(id, { logits: true })).logits!);
    line('step', stepRows);
    dec.reset();
    if (prompt.length > 1) await dec.prefill(prompt.slice(0, -1));
    const w = await dec.verify(prompt[prompt.length - 1], cont, { logits: true });
    line('window', w.logits!);
    // the per-op webgpu path (GPU.js kernels one op at a time, lib/ops.ts) on the whole sequence at once
    const perOp = (await forward(gpuOps, m, [[...prompt, ...cont]], newCache(m, 1))).data; // (1, L, V)
    const L = prompt.length + K;
    line(
      'per-op',
      rows.map((_, t) => perOp.subarray((L - 1 - K + t) * V, (L - K + t) * V)),
    );
    if (w.accepted !== K) console.log(`${name}: the window accepted ${w.accepted} of ${K} (the reference's own ids)`);
  } finally {
    dec.destroy();
  }
}
// which op: the float64 reference with ONE op taken from the per-op webgpu backend, on the first trained hybrid
const trained = models.find(([n]) => n.startsWith('hybrid-mamba2'));
if (trained) {
  const [name, m, prompt] = trained;
  const V = m.llama.vocabSize;
  const want = (await forward(ref, m, [prompt], newCache(m, 1))).data; // (1, L, V)
  for (const op of [
    'matmul',
    'linear',
    'gatedMlp',
    'linears',
    'causalConv1d',
    'ssdChunkScan',
    'ssdMinimalDiscrete',
    'gatedRmsnorm',
    'multistep',
    'cachedAttention',
  ] as const) {
    const g = (gpuOps as unknown as Record<string, unknown>)[op];
    if (typeof g !== 'function') continue;
    const mixed = Object.create(ref) as typeof ref;
    (mixed as unknown as Record<string, unknown>)[op] = (g as (...a: unknown[]) => unknown).bind(gpuOps);
    try {
      const got = (await forward(mixed, m, [prompt], newCache(m, 1))).data;
      let [e, sc] = [0, 0];
      for (let i = 0; i < want.length; i++) {
        e = Math.max(e, Math.abs(got[i] - want[i]));
        sc = Math.max(sc, Math.abs(want[i]));
      }
      console.log(
        `${name}: the reference with webgpu's ${op.padEnd(18)} ${(e / sc).toExponential(1)} (${want.length / V} rows)`,
      );
    } catch (err) {
      console.log(`${name}: ${op}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
}
// the product itself: webgpu's linear on a trained hybrid's weights with random x (32 rows), element by element
if (trained) {
  const [, m] = trained;
  const rr = new Rng(7);
  for (const wn of ['model.layers.0.mamba.in_proj.weight', 'model.layers.0.mamba.out_proj.weight', 'lm_head.weight']) {
    if (!m.weights.names().includes(wn)) continue;
    const w = m.weights.get(wn);
    const [O, I] = w.shape;
    const x = new Tensor(
      Float64Array.from({ length: 32 * I }, () => Math.fround(rr.next() * 2 - 1)),
      [32, I],
    );
    const wf = new Tensor(
      Float64Array.from(w.data, (v) => Math.fround(v)),
      [O, I],
    );
    const got = (await gpuOps.linear(x, wf)).data;
    const want = (await ref.linear(x, wf)).data;
    const bad: string[] = [];
    let worstE = 0;
    for (let i = 0; i < 32; i++)
      for (let o = 0; o < O; o++) {
        let sc = 0;
        for (let k = 0; k < I; k++) sc += Math.abs(x.data[i * I + k] * wf.data[o * I + k]);
        const e = Math.abs(got[i * O + o] - want[i * O + o]) / sc;
        worstE = Math.max(worstE, e);
        if (e > 1e-5 && bad.length < 12)
          bad.push(`[${i},${o}] ${got[i * O + o].toPrecision(6)} vs ${want[i * O + o].toPrecision(6)}`);
      }
    console.log(
      `linear ${wn} (${O}×${I}) on 32 random rows: worst |error| / Σ|x·w| ${worstE.toExponential(1)}${bad.length ? `; ${bad.join('; ')}` : ''}`,
    );
  }
}
console.log(`worst row error ${worst.toExponential(2)} (tolerance ${TOL}); '!' marks a row whose greedy id differs`);
process.exit(worst <= TOL ? 0 : 1);
