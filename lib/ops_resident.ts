/**
 * The ops layer's door to the resident chains of the webgpu backend: kernels/resident_chain.ts (GPU.js kernels
 * recorded into one command encoder over device buffers that persist between calls) and the one-token kernels
 * of kernels/decode.ts and kernels/decode_wgsl.ts. lib/ reaches kernels/ only through lib/ops*.ts
 * (docs/architecture.md); the user is lib/model/gpu_decode.ts (one GPU submission per decoded token).
 */
export * from '../kernels/decode.js';
export * from '../kernels/decode_wgsl.js';
export { MAIN, ResidentChain, type ChainBuffer, type ChainVars } from '../kernels/resident_chain.js';
