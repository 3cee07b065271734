/**
 * Where one training step's time goes (the teacher config of bench/train.ts, batch 8 × 256, on the
 * wasm-simd training engine): the linear layers' forward and backward products, attention (its products on
 * the SIMD kernels, forward and backward), and everything else — the float64 JavaScript of norms, RoPE, the
 * scans' and convs' references and their backwards, softmax/cross-entropy/KL. Adam is not in the step.
 * Measured after two full warm-up steps (V8's tier-up and the allocator's first use take a few), on `--threads`
 * (default 1: the bench's targets are one thread); parts in wall-clock ms, the step's process CPU ms beside.
 *   node --import tsx bench/train-breakdown.ts [--batch 8] [--len 256] [--only teacher|mamba2] [--threads 1]
 */
import { parseArgs } from 'node:util';
import { lossAndGrads, simdEngine, trainableBy, type MatmulEngine } from '../lib/train/model.js';
import { SimdGemm } from '../lib/simd/gemm.js';
import { forward, newCache } from '../lib/model/hybrid.js';
import { getOps } from '../lib/ops.js';
import { trainBenchIds, trainBenchModels } from './train_setup.js';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '8' },
    len: { type: 'string', default: '256' },
    only: { type: 'string' },
    threads: { type: 'string', default: '1' },
  },
});
SimdGemm.setSharedThreads(Number(values.threads));
const B = Number(values.batch);
const L = Number(values.len);
const { teacher, models } = trainBenchModels();
const ids = trainBenchIds(B, L);
const base = simdEngine(SimdGemm.sharedExact());
const t = { linearForward: 0, linearBackward: 0, attention: 0 };
const clock =
  <A extends unknown[], R>(k: keyof typeof t, f: (...a: A) => R) =>
  (...a: A): R => {
    const s = performance.now();
    const y = f(...a);
    t[k] += performance.now() - s;
    return y;
  };
const engine: MatmulEngine = {
  forward: clock('linearForward', base.forward),
  backward: clock('linearBackward', base.backward),
  attention: (q, k, v) => {
    const res = clock('attention', base.attention)(q, k, v);
    return { y: res.y, back: clock('attention', res.back) };
  },
};
const picked = models.filter(([n]) =>
  values.only === 'teacher'
    ? n.startsWith('teacher')
    : values.only === 'mamba2'
      ? n.startsWith('Mamba-2')
      : !n.startsWith('Mamba-1'),
);
for (const [name, m] of picked) {
  const distill = m !== teacher;
  const teacherLogits = distill
    ? Float64Array.from((await forward(await getOps('wasm-simd'), teacher, ids, newCache(teacher, ids.length))).data)
    : undefined;
  const o = {
    objective: distill ? ('distill' as const) : ('lm' as const),
    klWeight: 0.1,
    ceWeight: 1,
    trainable: distill ? trainableBy('mamba') : () => true,
    engine,
  };
  for (let k = 0; k < 2; k++) lossAndGrads(m, ids, { ...o, teacherLogits }); // warm-up
  t.linearForward = t.linearBackward = t.attention = 0;
  const c = process.cpuUsage();
  const s = performance.now();
  lossAndGrads(m, ids, { ...o, teacherLogits });
  const total = performance.now() - s;
  const cpu = process.cpuUsage(c);
  const rest = total - t.linearForward - t.linearBackward - t.attention;
  const pc = (x: number) => `${x.toFixed(0)} ms (${((100 * x) / total).toFixed(0)}%)`;
  console.log(
    `${name}, ${B} × ${L} tokens: ${total.toFixed(0)} ms = linear forward ${pc(t.linearForward)} + linear backward ${pc(t.linearBackward)} + attention ${pc(t.attention)} + the rest, float64 JavaScript, ${pc(rest)}; CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms`,
  );
}
process.exit(0);
