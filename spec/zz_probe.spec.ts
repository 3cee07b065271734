import { it } from 'vitest';
import { randomLlama } from '../lib/model/random.js';
import { convert } from '../lib/model/convert.js';
import { GpuTrainStep } from '../lib/train/gpu_step.js';
import { lossAndGrads, trainForward } from '../lib/train/model.js';
import { adamStep, newAdamState, type AdamOptions } from '../lib/train/optim.js';
import { float64Model } from '../lib/train/trainer.js';
import { relError } from '../lib/tensor.js';
import { Rng } from './helpers.js';
it('probe', async () => {
  const seed = 0;
  const t = float64Model(randomLlama({ vocab: 19, hidden: 8, intermediate: 12, layers: 2, heads: 2, kvHeads: 1 }, seed));
  const m = float64Model(convert(t, { variant: 'mamba1', attentionFraction: 0.5, seed, dState: 4 }));
  const o: AdamOptions = { lr: 3e-3, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, kind: 'adam' };
  const gpu = await GpuTrainStep.create(m, { batch: 2, seqLen: 5, optimizer: o, clip: 0, teacher: { model: t, klWeight: 0.7 }, trainable: () => true });
  const params = new Map(m.weights.names().map((n) => [n, m.weights.get(n).data as Float64Array]));
  const st = newAdamState();
  const r = new Rng(seed);
  for (let k = 1; k <= 3; k++) {
    const ids = Array.from({ length: 2 }, () => Array.from({ length: 5 }, () => r.int(0, 18)));
    await gpu.step(ids, o.lr, k);
    const cpu = lossAndGrads(m, ids, { objective: 'distill', teacherLogits: trainForward(t, ids, () => false).logits, klWeight: 0.7, trainable: () => true });
    const back = await gpu.read();
    for (const [n, g] of cpu.grads) { const e = relError(back.get(n)!.g!, g); if (e > 1e-5) console.log('grad', k, n, e.toExponential(2), Math.max(...g.map(Math.abs)).toExponential(2)); }
    for (const n of m.weights.names()) if (!cpu.grads.has(n)) console.log('nograd', k, n, Math.max(...back.get(n)!.g!.map(Math.abs)));
    adamStep(params, cpu.grads, st, o, o.lr);
  }
  const back = await gpu.read();
  for (const [n, mm] of st.m) console.log("m", n, relError(back.get(n)!.m!, mm).toExponential(2), relError(back.get(n)!.v!, st.v.get(n)!).toExponential(2), relError(back.get(n)!.p, params.get(n)!).toExponential(2));
  gpu.destroy();
});
