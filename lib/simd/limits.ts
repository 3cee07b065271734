/**
 * The wasm-simd backend's memory limits, in a module of their own (no Node imports) so that model loading,
 * which also runs in browsers, can check a checkpoint against them before the backend is made.
 */

/** A WebAssembly page: 64 KiB. */
export const WASM_PAGE_BYTES = 65536;
/** The pages the backend's module memory starts with (lib/simd/gemm.ts; its static data sits at the bottom). */
export const WASM_SIMD_INITIAL_PAGES = 16;
/** The pages the backend's module memory may grow to (lib/simd/gemm.ts creates it with this maximum). */
export const WASM_SIMD_MAX_PAGES = 32768;
/**
 * The module memory's largest size in bytes: 2 GiB. A model's packed float32 weights, and the staging copy of
 * the largest while it is packed, must fit in it (lib/model/load.ts checks before loading; measured: a 2-layer
 * Llama-3.2-1B-shaped model, 1.43 GiB of float32 weights + its 0.98 GiB embedding staged for the tied head,
 * ended in 'Memory.grow(): Maximum memory size exceeded' before that check).
 */
export const WASM_SIMD_MAX_BYTES = WASM_SIMD_MAX_PAGES * WASM_PAGE_BYTES;
