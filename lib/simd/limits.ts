/**
 * The wasm-simd backend's memory limits, in a module of their own (no Node imports) so that model loading,
 * which also runs in browsers, can check a checkpoint against them before the backend is made.
 *
 * A wasm32 memory addresses at most 4 GiB (65536 pages). Engines allow that much for a shared memory on 64-bit
 * hosts (V8 since 2020: Node ≥ 16, Chrome; measured here on Node 20: a shared memory of maximum 65536 pages made
 * and grown to 4 GiB); elsewhere the limit is 2 GiB (32768 pages). `wasmSimdMaxPages()` asks the engine once.
 */

/**
 * The output columns B is packed into for N outputs (asm/gemm.ts): whole groups of four 8-column panels,
 * interleaved by k — a weight's packed bytes are packedColumns(N)·K·(4 float32, 2 bf16).
 */
export const PANEL_GROUP = 32;
export const packedColumns = (N: number): number => Math.ceil(N / PANEL_GROUP) * PANEL_GROUP;

/** A WebAssembly page: 64 KiB. */
export const WASM_PAGE_BYTES = 65536;
/** The pages the backend's module memory starts with (lib/simd/gemm.ts; its static data sits at the bottom). */
export const WASM_SIMD_INITIAL_PAGES = 16;
/** 2 GiB: the pages every engine allows a shared wasm32 memory (the fallback of wasmSimdMaxPages). */
const PAGES_2G = 32768;
/** 4 GiB: all that wasm32 addresses (asm/build.sh declares the imported memory with this maximum). */
const PAGES_4G = 65536;
let maxPages: number | undefined;
/**
 * The pages the backend's module memory may grow to here (lib/simd/gemm.ts creates it with this maximum):
 * 65536 (4 GiB) where the engine makes a shared memory of that maximum, else 32768 (2 GiB).
 */
export function wasmSimdMaxPages(): number {
  if (maxPages === undefined) {
    try {
      new WebAssembly.Memory({ initial: 1, maximum: PAGES_4G, shared: true });
      maxPages = PAGES_4G;
    } catch {
      maxPages = PAGES_2G;
    }
  }
  return maxPages;
}

/** The module memory's largest size in bytes here: 4 GiB, or 2 GiB on an engine that allows no more. */
export const wasmSimdMaxBytes = (): number => wasmSimdMaxPages() * WASM_PAGE_BYTES;
