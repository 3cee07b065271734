/**
 * The CPU kernels of the `wasm-simd` backend: asm/gemm.ts compiled to WebAssembly (128-bit SIMD,
 * register-tiled 4×8 micro-kernel over B packed in 8-column panels; see that file). This file owns the
 * module — its memory, threads and resident weights — and drives the matrix products; the module's other
 * kernels have their drivers beside it: ./multistep.ts (Algorithm 2's MultiStep), ./attention.ts (cached
 * attention's products).
 *
 *   linear(x, W)   y = x·Wᵀ   (M×K)·(N×K)ᵀ   W packed once per weight array and kept resident; `out`: a
 *                                              buffer to reuse (no allocation per call, as decode wants)
 *   matmul(a, b)   c = a·b    (M×K)·(K×N)
 *   matmulTN(a, b) c = aᵀ·b   (the dW = dYᵀ·X of a backward: a transposed into scratch first)
 *
 * Memory: one shared WebAssembly.Memory. The module's static data (Math tables) sits at the bottom, below
 * `dataEnd()`; nothing is placed there. Packed weights live in a resident region (a bump allocator whose
 * forgotten blocks go on a free list for the next packed weight, freed all at once by `releaseResident`);
 * each call's operands use a scratch region above it, reused by every call.
 * Float32 in, float32 out (inputs in float64 are rounded once, as every float32 backend does).
 *
 * Threads: with `threads` > 1, worker threads instantiate the same module on the same memory; a product
 * of at least MIN_PARALLEL_FLOP is split by columns (whole 8-column panels), the calling thread computing
 * its share too; each worker waits on its own control block (Atomics.wait/notify). Every thread writes a
 * disjoint set of output columns with the same per-element arithmetic, so the result is bit-identical
 * whatever the thread count.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ArgumentError } from '../errors.js';
import { onArrayChanged } from '../../kernels/runtime.js';

type FloatArray = Float32Array | Float64Array;

export interface Exports {
  packBT(w: number, N: number, K: number, bp: number): void;
  packBN(b: number, K: number, N: number, bp: number): void;
  transpose(a: number, M: number, K: number, out: number): void;
  gemm(a: number, bp: number, c: number, M: number, N: number, K: number, n0: number, n1: number, accumulate: number): void;
  readSum(p: number, n: number): number;
  multistep(...args: number[]): void;
  attnScores(qT: number, R2: number, K: number, hd: number, ns: number, R: number, scale: number, S: number, T: number): void;
  attnValues(W: number, T: number, V: number, hd: number, ns: number, R: number, O: number): void;
  dataEnd(): number;
}

const PAGE = 65536;
const NR = 8;
/**
 * Below this many flops (2·M·N·K) a product runs on the calling thread alone: 2 MFLOP, where waking a worker
 * starts to pay. On this machine (2 cores, 2026-12-01) a d128 verify window's vocabulary projection
 * 2048×128 took 215 → 128 µs for 5 rows and 296 → 171 µs for 8 rows on two threads, and about the same
 * for 4 rows (106–158 vs 99–136, noisy); one row (0.5 MFLOP, decode) and the 8 × 388 × 128 in-projection
 * (0.8 MFLOP) stay on one. (The earlier 8 MFLOP came from a run where 5 rows were faster on one thread.)
 */
export const MIN_PARALLEL_FLOP = 1 << 21;

// control block of a worker (Int32): [generation, done, ap, bp, cp, M, N, K, n0, n1, accumulate]
const WORKER_JS = `
const { workerData } = require('node:worker_threads');
const { module, memory, ctrl } = workerData;
const gemm = new WebAssembly.Instance(module, { env: { memory } }).exports.gemm;
const c = new Int32Array(ctrl);
let gen = 0;
for (;;) {
  Atomics.wait(c, 0, gen);
  gen = Atomics.load(c, 0);
  if (gen < 0) break;
  gemm(c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]);
  Atomics.store(c, 1, gen);
  Atomics.notify(c, 1);
}`;

/** The compiled kernel, committed beside its source (spec/simd.spec.ts rebuilds it and compares). */
/** Where the built kernel lives (a function: a browser bundle of this module never reads it, and has no path module). */
export const wasmPath = (): string => join(import.meta.dirname, '..', '..', 'asm', 'gemm.wasm');

export class SimdGemm {
  private readonly memory: WebAssembly.Memory;
  private readonly x: Exports;
  /** the first byte the module's static data leaves free (its Math tables sit below; address 0 means "absent") */
  private readonly base: number;
  private residentTop: number; // end of the packed weights, from `base` up
  private packed = new WeakMap<object, { ptr: number; N: number; K: number }>();

  private readonly workers: Array<{ worker: Worker; ctrl: Int32Array; gen: number }> = [];

  private constructor(
    bytes: Uint8Array,
    readonly threads: number,
  ) {
    this.memory = new WebAssembly.Memory({ initial: 16, maximum: 32768, shared: true });
    const mod = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    this.x = new WebAssembly.Instance(mod, { env: { memory: this.memory } }).exports as unknown as Exports;
    this.base = align(Math.max(16, this.x.dataEnd()));
    this.residentTop = this.base;
    for (let t = 1; t < threads; t++) {
      const ctrl = new Int32Array(new SharedArrayBuffer(11 * 4));
      const worker = new Worker(WORKER_JS, { eval: true, workerData: { module: mod, memory: this.memory, ctrl: ctrl.buffer } });
      worker.unref(); // idle workers never keep the process alive
      this.workers.push({ worker, ctrl, gen: 0 });
    }
  }

  /** `threads`: 1 (default) or more; at most the machine's cores are useful. */
  static load(threads = 1): SimdGemm {
    if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new ArgumentError('threads', 'an integer in [1, 64]', threads);
    return new SimdGemm(readFileSync(wasmPath()), threads);
  }

  /** As many threads as the machine has cores. */
  static loadAllCores(): SimdGemm {
    return SimdGemm.load(Math.max(1, Math.min(64, availableParallelism())));
  }

  private static sharedInstance: SimdGemm | undefined;
  /**
   * The process-wide instance on every core (the wasm-simd backend and the SIMD training engine share it):
   * a weight changed in place (kernels/runtime.ts markChanged) has its packed copy dropped.
   */
  static shared(): SimdGemm {
    if (!SimdGemm.sharedInstance) {
      const g = SimdGemm.loadAllCores();
      onArrayChanged((a) => g.forget(a));
      SimdGemm.sharedInstance = g;
    }
    return SimdGemm.sharedInstance;
  }

  /** Stop the worker threads (a closed instance still runs, on the calling thread). */
  close(): void {
    for (const w of this.workers.splice(0)) {
      Atomics.store(w.ctrl, 0, -1);
      Atomics.notify(w.ctrl, 0);
    }
  }

  /** Make the memory reach byte `end`, growing it if needed. */
  ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
  }

  /** Copy `a` to byte `ptr` as float32 (growing the memory if needed). */
  put(a: FloatArray, ptr: number): void {
    this.ensure(ptr + a.length * 4);
    new Float32Array(this.memory.buffer, ptr, a.length).set(a);
  }

  private packedPanels(N: number, K: number): number {
    return Math.ceil(N / NR) * NR * K * 4;
  }

  /** y (M×N) = x (M×K) · Wᵀ, W (N×K). `resident`: keep W packed for the next call with the same array. */
  linear(x: FloatArray, M: number, K: number, w: FloatArray, N: number, resident = true, out?: Float32Array): Float32Array {
    check('linear', x.length === M * K && w.length === N * K, `x (${M}×${K}) and W (${N}×${K})`, [x.length, w.length]);
    const hit = resident ? this.packed.get(w) : undefined;
    let bp: number;
    if (hit && hit.N === N && hit.K === K) bp = hit.ptr;
    else {
      const bytes = this.packedPanels(N, K);
      const slot = resident ? this.takeFree(bytes) : undefined; // the memory of a forgotten weight, if one fits
      bp = slot ?? align(this.residentTop);
      const stage = align(Math.max(this.residentTop, bp + bytes));
      this.put(w, stage);
      this.x.packBT(stage, N, K, bp);
      if (resident) {
        if (slot === undefined) this.residentTop = bp + bytes;
        this.packed.set(w, { ptr: bp, N, K });
      }
    }
    const ap = align(Math.max(this.residentTop, bp + this.packedPanels(N, K)));
    this.put(x, ap);
    return this.run(ap, M, K, bp, N, align(ap + M * K * 4), out);
  }

  /** c (M×N) = a (M×K) · b (K×N). */
  matmul(a: FloatArray, M: number, K: number, b: FloatArray, N: number): Float32Array {
    check('matmul', a.length === M * K && b.length === K * N, `a (${M}×${K}) and b (${K}×${N})`, [a.length, b.length]);
    const bp = align(this.residentTop);
    const stage = align(bp + this.packedPanels(N, K));
    this.put(b, stage);
    this.x.packBN(stage, K, N, bp);
    this.put(a, stage); // b is packed: its staging area is free again
    return this.run(stage, M, K, bp, N, align(stage + Math.max(M * K, K * N) * 4));
  }

  /** c (M×N) = aᵀ · b for a (K×M), b (K×N): the weight gradient dW = dYᵀ·X. */
  matmulTN(a: FloatArray, K: number, M: number, b: FloatArray, N: number): Float32Array {
    check('matmulTN', a.length === K * M && b.length === K * N, `a (${K}×${M}) and b (${K}×${N})`, [a.length, b.length]);
    const bp = align(this.residentTop);
    const stage = align(bp + this.packedPanels(N, K));
    this.put(b, stage);
    this.x.packBN(stage, K, N, bp);
    this.put(a, stage);
    const aT = align(stage + Math.max(K * M, K * N) * 4);
    this.ensure(aT + K * M * 4);
    this.x.transpose(stage, K, M, aT);
    return this.run(aT, M, K, bp, N, align(aT + K * M * 4));
  }

  /** C (at cp) = A (at ap) · packed B; copied into `out` (M·N floats) when given, else into a new array. */
  private run(ap: number, M: number, K: number, bp: number, N: number, cp: number, out?: Float32Array): Float32Array {
    if (out && out.length !== M * N) throw new ArgumentError('out', `${M * N} floats (${M}×${N})`, out.length);
    this.ensure(cp + M * N * 4);
    const panels = Math.ceil(N / NR);
    const parts = 2 * M * N * K >= MIN_PARALLEL_FLOP ? Math.min(this.workers.length + 1, panels) : 1;
    if (parts === 1) this.x.gemm(ap, bp, cp, M, N, K, 0, N, 0);
    else {
      const bound = (p: number) => Math.min(N, Math.round((panels * p) / parts) * NR);
      for (let w = 0; w < parts - 1; w++) {
        const k = this.workers[w]!;
        k.ctrl.set([ap, bp, cp, M, N, K, bound(w + 1), bound(w + 2), 0], 2);
        Atomics.store(k.ctrl, 0, ++k.gen);
        Atomics.notify(k.ctrl, 0);
      }
      this.x.gemm(ap, bp, cp, M, N, K, 0, bound(1), 0); // this thread's share: the first columns
      for (let w = 0; w < parts - 1; w++) {
        const k = this.workers[w]!;
        for (let d = Atomics.load(k.ctrl, 1); d !== k.gen; d = Atomics.load(k.ctrl, 1)) Atomics.wait(k.ctrl, 1, d);
      }
    }
    const c = new Float32Array(this.memory.buffer, cp, M * N);
    if (!out) return c.slice();
    out.set(c);
    return out;
  }

  // ---- for the drivers of the module's other kernels (./multistep.ts, ./attention.ts)

  /** Every kernel of the module, callable on this thread. */
  get kernels(): Exports {
    return this.x;
  }

  /** The first byte above the packed weights: a call's arrays go from here up (every call reuses the space). */
  scratchStart(): number {
    return align(this.residentTop);
  }

  /** The memory's buffer now (make views after the last `ensure`: growing replaces it). */
  get buffer(): ArrayBufferLike {
    return this.memory.buffer;
  }

  /** Σ a by the SIMD read of `readBandwidth` (float32 accumulators: for checking that read, not for precision). */
  sum(a: FloatArray): number {
    const p = align(this.residentTop);
    this.put(a, p);
    return this.x.readSum(p, a.length);
  }

  /**
   * Memory read bandwidth (bytes/s): a SIMD sum with eight accumulators over `mib` MiB on this thread, best of
   * `reps` — the fair floor for a memory-bound product (what a C loop reads), unlike a one-accumulator JS sum.
   */
  readBandwidth(mib = 256, reps = 5): number {
    const n = (mib * 1024 * 1024) / 4;
    const p = align(this.residentTop);
    this.ensure(p + n * 4);
    new Float32Array(this.memory.buffer, p, n).fill(1);
    let best = Infinity;
    for (let r = 0; r < reps; r++) {
      const t = performance.now();
      if (Math.abs(this.x.readSum(p, n) - n) > n * 1e-6) throw new Error('readSum: wrong sum');
      best = Math.min(best, performance.now() - t);
    }
    return (n * 4) / (best / 1000);
  }

  /**
   * Forget the packed copy of one weight array (it changed in place, as every trainable weight does at each
   * training step): its memory goes on a free list that the next packed weight of at most its size reuses,
   * so a training loop re-packing the same weights every step runs in constant memory.
   */
  forget(w: object): void {
    const h = this.packed.get(w);
    if (!h) return;
    this.packed.delete(w);
    this.free.push({ ptr: h.ptr, bytes: this.packedPanels(h.N, h.K) });
  }
  private free: Array<{ ptr: number; bytes: number }> = [];

  /** First fit from the free list (the rest of a larger block stays free). */
  private takeFree(bytes: number): number | undefined {
    const i = this.free.findIndex((f) => f.bytes >= bytes);
    if (i < 0) return undefined;
    const f = this.free[i]!;
    const rest = f.bytes - align(bytes);
    if (rest >= 64) this.free[i] = { ptr: f.ptr + align(bytes), bytes: rest };
    else this.free.splice(i, 1);
    return f.ptr;
  }

  /** Forget every resident packed weight (their memory is reused). */
  releaseResident(): void {
    this.residentTop = this.base;
    this.free = [];
    this.packed = new WeakMap(); // a WeakMap cannot be cleared: replace it
  }

  /** Bytes of packed weights kept resident. */
  get residentBytes(): number {
    return this.residentTop - this.base;
  }
}

/** The next 64-byte boundary at or above p (where every array is placed). */
export const align = (p: number) => (p + 63) & ~63;

/** y (rows × bias.length, float32) += bias, each bias value rounded to float32 first: the backend's biased linear. */
export function addBiasRows(y: Float32Array, rows: number, bias: ArrayLike<number>): void {
  const n = bias.length;
  for (let r = 0; r < rows; r++) for (let o = 0; o < n; o++) y[r * n + o]! += Math.fround(bias[o]!);
}

function check(what: string, ok: boolean, expected: string, actual: unknown): void {
  if (!ok) throw new ArgumentError(what, expected, actual);
}
