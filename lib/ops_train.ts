/**
 * The ops layer's door to the GPU training kernels (kernels/train_layers.ts, train_attention.ts, train_loss.ts,
 * adamw.ts; the products: tiled_matmul.ts, hand-written WGSL) and the resident chain they are recorded into; the user is lib/train/gpu_step.ts (a training step
 * as one GPU submission). lib/ reaches kernels/ only through lib/ops*.ts (docs/architecture.md).
 */
export * from '../kernels/train_layers.js';
export * from '../kernels/train_attention.js';
export * from '../kernels/train_loss.js';
export * from '../kernels/adamw.js';
export * from '../kernels/tiled_matmul.js';
export type { WgslKernel } from '../kernels/resident_chain.js';
export * from '../kernels/train_mamba.js';
export { gatedRmsnormBackwardSources, gatedRmsnormDwKernels, gatedRmsnormSource } from '../kernels/gated_rmsnorm.js';
export { defaultScanChunk } from '../kernels/selective_scan.js';
export * from '../kernels/train_accumulate.js';
