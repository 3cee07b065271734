/**
 * Gradient accumulation on the GPU training step (lib/train/gpu_step.ts, accumulate > 1), float32, one thread per
 * value: each micro-batch's gradient is added into an accumulator, which is scaled by 1/A before clipping and Adam
 * (the CPU trainer's mean over the A micro-batches, lib/train/trainer.ts).
 *   add:    acc' = acc + g          (a kernel reads and writes different buffers: the chain copies acc' back)
 *   scale:  y = c·x
 */
import type { TrainKernel } from './train_layers.js';

/** y = c·x elementwise over `size` values. */
export const scaleKernel = (size: number, c: number): TrainKernel => ({
  key: 'acc.scale',
  source: `function (x) { return this.constants.C * x[this.thread.x]; }`,
  constants: { C: c },
  size,
});
