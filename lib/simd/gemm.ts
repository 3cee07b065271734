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
 *   gatedMlp(x, …) y = (silu(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ, the intermediates never leaving the module's memory
 *   packBf16(N, K, fill)      W (N×K) given as bf16 words, packed once into bf16 panels (`Bf16Panels`, 2 bytes a
 *                             weight): `linear` with them widens each weight to float32 in registers — exact, so
 *                             the same bits as float32 panels of the same (bf16-valued) weights, reading half the
 *                             bytes; `rowBf16` reads one row of W back (an embedding lookup from the tied head)
 *
 * Memory: one shared WebAssembly.Memory. The module's static data (Math tables) sits at the bottom, below
 * `dataEnd()`; nothing is placed there. Packed weights live in a resident region (a bump allocator whose
 * forgotten blocks go on a free list for the next packed weight, freed all at once by `releaseResident`);
 * each call's operands use a scratch region above it, reused by every call.
 * Float32 in, float32 out (inputs in float64 are rounded once, as every float32 backend does).
 *
 * Two builds of the same source (asm/build.sh): asm/gemm.wasm rounds each product and then each sum (baseline
 * SIMD: the same bits on every machine), asm/gemm-fma.wasm uses relaxed SIMD's fused multiply-add (one
 * rounding where the CPU has FMA; up to twice the products per cycle, since baseline WebAssembly has none).
 * `SimdGemm.shared()` — the wasm-simd backend, inference — takes the FMA build where the engine runs it
 * (Node 20 after `--experimental-wasm-relaxed-simd`, which `relaxedSimd()` sets; Node 22 and current browsers
 * as they are), unless MIL_SIMD_FMA=0; `SimdGemm.sharedExact()` — the training engine — always the baseline
 * build, so a seed gives the same weights on any machine. Within one build every kernel keeps the same
 * additions in the same order, so a window's rows equal those rows alone and thread counts agree, bit for bit.
 *
 * Threads: with `threads` > 1, worker threads instantiate the same module on the same memory; a product
 * of at least MIN_PARALLEL_FLOP, or whose weight (packed B) has at least MIN_PARALLEL_BYTES, is shared out by
 * columns in whole 32-column panel groups: the calling thread claims pieces from the front, the workers from
 * the back, each piece 1/threads of what is left (guided self-scheduling, one compare-and-swap per piece), until
 * the two ends meet — a thread that wakes late or runs on a busy core takes less (a fixed half each left the
 * caller waiting on its worker for a fifth of a verify window on this VM), few pieces are claimed (each claim
 * moves a cache line between cores, ~0.4 µs here), and each thread reads about the same columns from one call
 * to the next (its own cache keeps them). The caller waits for the pieces to be done (a shared count), not
 * for the workers: one still asleep when the work ran out costs nothing. Each worker waits on its own control
 * block (Atomics.wait/notify). Every piece is a disjoint set of output columns with the same per-element
 * arithmetic, so the result is bit-identical whatever the thread count or who took which.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { ArgumentError } from '../errors.js';
import { onArrayChanged } from '../weight_registry.js';
import { PANEL_GROUP, WASM_PAGE_BYTES, WASM_SIMD_INITIAL_PAGES, packedColumns, wasmSimdMaxPages } from './limits.js';
import { packageRoot } from '../package_root.js';

type FloatArray = Float32Array | Float64Array;

/** C[:, n0:n1] (+)= A · packed B (asm/gemm.ts `gemm`; addresses are byte offsets in the module memory) */
type GemmKernel = (
  a: number,
  bp: number,
  c: number,
  M: number,
  N: number,
  K: number,
  n0: number,
  n1: number,
  accumulate: number,
) => void;

export interface Exports {
  packBT(w: number, N: number, K: number, bp: number): void;
  packBN(b: number, K: number, N: number, bp: number): void;
  packBTBf16(w: number, N: number, K: number, bp: number): void;
  transpose(a: number, M: number, K: number, out: number): void;
  gemm: GemmKernel;
  /** as gemm, B packed as bf16 panels */
  gemmBf16: GemmKernel;
  readSum(p: number, n: number): number;
  peakMadd(n: number, m: number, c: number): number;
  multistep(...args: number[]): void;
  attnScores(
    qT: number,
    R2: number,
    K: number,
    hd: number,
    ns: number,
    R: number,
    scale: number,
    S: number,
    T: number,
  ): void;
  attnValues(W: number, T: number, V: number, hd: number, ns: number, R: number, O: number): void;
  /** rows of S (R, T), each over its first ns[r] entries: softmax with Math.exp's bits (asm/attention.ts) */
  attnSoftmax(S: number, T: number, ns: number, R: number): void;
  /** out[j] = exp(x[j]) by the softmax's exp, for the tests */
  expRows(x: number, n: number, out: number): void;
  /** a key/value head's window of causal attention in float32; returns the rows that overflowed (asm/attention.ts) */
  attnWindowF32(
    Q: number,
    KT: number,
    V: number,
    O: number,
    S: number,
    ns: number,
    R4: number,
    hd: number,
    T8: number,
    scale: number,
  ): number;
  siluMul(a: number, b: number, out: number, n: number): void;
  rowLse(z: number, rows: number, V: number, out: number): void;
  dataEnd(): number;
}

const PAGE = WASM_PAGE_BYTES;
/**
 * columns of a panel group: asm/gemm.ts packs B in groups of four 8-column panels interleaved by k (a one-row
 * product reads a group as one stream); the unit threads share work in, and of the packed size (the last group
 * padded)
 */
const GROUP = PANEL_GROUP;
/**
 * ms a thread spins (Atomics.load) before it sleeps (Atomics.wait): a worker waiting for the next product, the
 * caller waiting for the workers' last pieces. Notifying a sleeping worker and sleeping until it notifies back took
 * 27 µs (median; 80 µs at the 99th percentile) on this VM on 2026-12-01, and a d512 forward makes ~50 products.
 * (2026-12-05: in a d512 decode on 2 threads the worker still sleeps 2–3 times a token; 0.05, 0.2 and 1 ms gave
 * the same ms/token within the noise.)
 */
const SPIN_MS = 0.2;
/**
 * Below this many flops (2·M·N·K) a product runs on the calling thread alone (unless its weight is large, below):
 * 2 MFLOP, where waking a worker starts to pay for a product of many rows (compute-bound). On this machine (2 cores,
 * 2026-12-01) a d128 verify window's vocabulary projection 2048×128 took 215 → 128 µs for 5 rows and 296 → 171 µs
 * for 8 rows on two threads, and about the same for 4 rows (106–158 vs 99–136, noisy). (The earlier 8 MFLOP came
 * from a run where 5 rows were faster on one thread.)
 */
const MIN_PARALLEL_FLOP = 1 << 21;
/**
 * A product whose packed weight has at least this many bytes runs on every thread whatever its flops: a product
 * of few rows reads its weight once (memory-bound), and two cores read memory about twice as fast as one (this
 * VM, 2026-12-05: 27 → 51 GB/s, an eight-accumulator SIMD sum over 64 MiB, one thread against two halves). The
 * 2 MFLOP rule alone kept every product of a d512 decode step but the vocabulary projection on one thread
 * (1×512×1408 is 1.4 MFLOP, 1×512×512 0.5): there 2 threads decoded 6.46 → 5.38 ms/token, and 4.73 with every
 * product shared (one run, interleaved). One row, its weight read from memory (a pool of 256 MiB cycled), medians
 * in µs, 1 → 2 threads: 256 KiB (256→256) 11.7 → 11.4, 512 KiB (512→256) 26.4 → 19.7, 1 MiB (512→512)
 * 51.7 → 36.6, 2.75 MiB (512→1408) 128.6 → 69.4; below 512 KiB handing out the work (~3 µs) eats the gain. A
 * weight already in the cache gains less or loses a little: 512 KiB 6.9 → 8.7, 1 MiB (2048×128, the shipped d128
 * models' vocabulary projection) 23.3 → 21.6, 2.75 MiB 53.9 → 51.7.
 */
const MIN_PARALLEL_BYTES = 512 * 1024;

// the products being computed (one, or several of the same A: `linearMany`), shared by all threads (Int32; CLAIM,
// DONE and OPS 64 bytes apart, so the claims, the count of work done and the operands, read by every piece, never
// share a cache line): at CLAIM the units not yet claimed, [front, back) as back << 16 | front; at DONE the units
// computed; from OPS [units, columns per unit, ap, M, K, threads sharing it, products]; from PARTS, per product
// [its first unit, bp, N, cp, bf16 panels (1) or float32 (0)]. A unit is `columns per unit` columns of one
// product; the products' units follow one another. Addresses past 2 GiB are stored as their int32 bits (the
// kernels read them as u32).
const CLAIM = 0;
const DONE = 16;
const OPS = 32;
const PARTS = 40;
/** products of one hand-off at most (`linearMany`) */
const MAX_PARTS = 8;
const JOB = PARTS + 5 * MAX_PARTS;
/** units of a hand-off: at most this many, so back << 16 | front stays a positive int32 */
const MAX_UNITS = 0x7fff;
/** One product of a hand-off: packed B at bp (N columns), C at cp. */
interface Part {
  bp: number;
  N: number;
  cp: number;
  bf16: boolean;
}
/**
 * Units [a, b) of the job in `j`: each product's columns in them, through `gemm`/`gemmBf16` — the caller's and the
 * workers' one piece of code (the workers' copy is this source, evaluated in their scope).
 */
function piece(j: Int32Array, a: number, b: number, gemm: Exports['gemm'], gemmBf16: Exports['gemmBf16']): void {
  const w = j[OPS + 1];
  for (let p = 0; p < j[OPS + 6]; p++) {
    const o = PARTS + 5 * p;
    const us = j[o];
    const N = j[o + 2];
    const lo = Math.max(a, us);
    const hi = Math.min(b, us + Math.ceil(N / w));
    if (lo < hi)
      (j[o + 4] ? gemmBf16 : gemm)(
        j[OPS + 2],
        j[o + 1],
        j[o + 3],
        j[OPS + 3],
        N,
        j[OPS + 4],
        (lo - us) * w,
        Math.min(N, (hi - us) * w),
        0,
      );
  }
}
// control block of a worker (Int32): [generation]
const WORKER_JS = `
const [OPS, PARTS] = [${OPS}, ${PARTS}];
${piece.toString()}
const { workerData } = require('node:worker_threads');
const { module, memory, ctrl, job } = workerData;
const { gemm, gemmBf16 } = new WebAssembly.Instance(module, { env: { memory } }).exports;
const c = new Int32Array(ctrl);
const j = new Int32Array(job);
let gen = 0;
for (;;) {
  // a forward calls products back to back: spin a little for the next one before sleeping (waking takes long)
  for (const until = performance.now() + ${SPIN_MS}; Atomics.load(c, 0) === gen && performance.now() < until; );
  Atomics.wait(c, 0, gen);
  gen = Atomics.load(c, 0);
  if (gen < 0) break;
  // claim from the back, 1/threads of what is left, until the ends meet (the operands are read after the claim:
  // a claim that succeeds is of the job now published, which stays until its units are all done)
  for (;;) {
    const v = Atomics.load(j, ${CLAIM});
    const front = v & 0xffff, back = v >>> 16;
    if (back <= front) break;
    const take = Math.ceil((back - front) / j[${OPS} + 5]);
    if (Atomics.compareExchange(j, ${CLAIM}, v, v - (take << 16)) !== v) continue;
    piece(j, back - take, back, gemm, gemmBf16);
    if (Atomics.add(j, ${DONE}, take) + take === j[${OPS}]) Atomics.notify(j, ${DONE});
  }
}`;

/**
 * Where a build of the kernels lives, committed beside its source (spec/simd.spec.ts rebuilds both and
 * compares): the baseline one, or with `fma` the relaxed-SIMD one. (A function: a browser bundle of this
 * module never reads it, and has no path module.)
 */
export const wasmPath = (fma = false): string => join(packageRoot(), 'asm', fma ? 'gemm-fma.wasm' : 'gemm.wasm');

let relaxed: boolean | undefined;
/**
 * Whether this engine runs relaxed SIMD (asm/gemm-fma.wasm validates). Node 20 has it behind
 * `--experimental-wasm-relaxed-simd`: where the module does not validate, the flag is set for this process
 * (V8 reads it when it compiles a module; the same implementation Chrome 114 and Node 22 ship) and it is
 * asked again.
 */
export function relaxedSimd(): boolean {
  if (relaxed === undefined) {
    const bytes = readFileSync(wasmPath(true));
    relaxed = WebAssembly.validate(bytes);
    if (!relaxed) {
      setFlagsFromString('--experimental-wasm-relaxed-simd');
      relaxed = WebAssembly.validate(bytes);
    }
  }
  return relaxed;
}

/** The inference backend's choice: the FMA build where the engine runs it, unless MIL_SIMD_FMA=0. */
export const fmaWanted = (): boolean => process.env.MIL_SIMD_FMA !== '0' && relaxedSimd();

/**
 * A weight W (N×K) held as bf16 panels in one instance's resident memory (`SimdGemm.packBf16`): the packed copy
 * is the only one. Valid until that instance's `releaseResident`.
 */
export class Bf16Panels {
  constructor(
    readonly gemm: SimdGemm,
    /** byte address of the panels in the module memory */
    readonly ptr: number,
    readonly N: number,
    readonly K: number,
    /** the instance's resident generation it was packed in (releaseResident starts a new one) */
    readonly epoch: number,
  ) {}
}

export class SimdGemm {
  private readonly memory: WebAssembly.Memory;
  private readonly x: Exports;
  /** the first byte the module's static data leaves free (its Math tables sit below; address 0 means "absent") */
  private readonly base: number;
  private residentTop: number; // end of the packed weights, from `base` up
  private packed = new WeakMap<object, { ptr: number; N: number; K: number }>();
  /** bumped by releaseResident: Bf16Panels of an earlier generation point at reused memory */
  private epoch = 0;

  private readonly workers: Array<{ worker: Worker; ctrl: Int32Array; gen: number }> = [];
  private readonly job = new Int32Array(new SharedArrayBuffer(JOB * 4));

  private constructor(
    bytes: Uint8Array,
    readonly threads: number,
    /** whether this instance runs the fused multiply-add build (asm/gemm-fma.wasm) */
    readonly fma: boolean,
  ) {
    this.memory = new WebAssembly.Memory({
      initial: WASM_SIMD_INITIAL_PAGES,
      maximum: wasmSimdMaxPages(),
      shared: true,
    });
    const mod = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    this.x = new WebAssembly.Instance(mod, { env: { memory: this.memory } }).exports as unknown as Exports;
    this.base = align(Math.max(16, this.x.dataEnd()));
    this.residentTop = this.base;
    for (let t = 1; t < threads; t++) {
      const ctrl = new Int32Array(new SharedArrayBuffer(4));
      const worker = new Worker(WORKER_JS, {
        eval: true,
        workerData: { module: mod, memory: this.memory, ctrl: ctrl.buffer, job: this.job.buffer },
      });
      worker.unref(); // idle workers never keep the process alive
      this.workers.push({ worker, ctrl, gen: 0 });
    }
  }

  /**
   * `threads`: 1 (default) or more; at most the machine's cores are useful. `fma`: the fused multiply-add build
   * (an error where the engine lacks relaxed SIMD; `relaxedSimd()` says).
   */
  static load(threads = 1, fma = false): SimdGemm {
    if (!Number.isInteger(threads) || threads < 1 || threads > 64)
      throw new ArgumentError('threads', 'an integer in [1, 64]', threads);
    if (fma && !relaxedSimd())
      throw new ArgumentError(
        'fma',
        'an engine with relaxed WebAssembly SIMD',
        'this engine rejects asm/gemm-fma.wasm',
      );
    return new SimdGemm(readFileSync(wasmPath(fma)), threads, fma);
  }

  /** As many threads as the machine has cores. */
  static loadAllCores(fma = false): SimdGemm {
    return SimdGemm.load(Math.max(1, Math.min(64, availableParallelism())), fma);
  }

  private static sharedInstances = new Map<boolean, SimdGemm>();
  private static sharedThreads: number | undefined;
  /**
   * The thread count of the process-wide instances (`shared`, `sharedExact`; default: every core), e.g. from
   * `mil train --threads T`. Before their first use: an instance already made with another count is an error.
   */
  static setSharedThreads(threads: number): void {
    if (!Number.isInteger(threads) || threads < 1 || threads > 64)
      throw new ArgumentError('threads', 'an integer in [1, 64]', threads);
    for (const g of SimdGemm.sharedInstances.values())
      if (g.threads !== threads)
        throw new ArgumentError(
          'threads',
          `${g.threads} (the shared SIMD instances already run on that many)`,
          threads,
        );
    SimdGemm.sharedThreads = threads;
  }
  private static sharedOn(fma: boolean): SimdGemm {
    let g = SimdGemm.sharedInstances.get(fma);
    if (!g) {
      const made = SimdGemm.sharedThreads ? SimdGemm.load(SimdGemm.sharedThreads, fma) : SimdGemm.loadAllCores(fma);
      onArrayChanged((a) => made.forget(a));
      SimdGemm.sharedInstances.set(fma, (g = made));
    }
    return g;
  }
  /**
   * The wasm-simd backend's process-wide instance on every core (inference: the FMA build where `fmaWanted()`).
   * A weight changed in place (kernels/runtime.ts markChanged) has its packed copy dropped.
   */
  static shared(): SimdGemm {
    return SimdGemm.provided ?? SimdGemm.sharedOn(fmaWanted());
  }
  private static provided: SimdGemm | undefined;
  /**
   * Where the module cannot be read from a file (the browser page, web/app.ts fetches it): the instance that
   * `shared()` returns from now on, made from the module's `bytes` (the FMA build when `fma`) on the calling
   * thread alone. Inference only: `sharedExact` still loads the baseline build from its file.
   */
  static provideShared(bytes: Uint8Array, fma: boolean): SimdGemm {
    const g = new SimdGemm(bytes, 1, fma);
    onArrayChanged((a) => g.forget(a));
    return (SimdGemm.provided = g);
  }
  /** Whether `provideShared` gave the shared instance (the wasm-simd backend then needs no file). */
  static get isProvided(): boolean {
    return SimdGemm.provided !== undefined;
  }
  /** The training engine's process-wide instance: the baseline build always, the same bits on every machine. */
  static sharedExact(): SimdGemm {
    return SimdGemm.sharedOn(false);
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
    return packedColumns(N) * K * 4;
  }

  /**
   * Pack W (N×K) from bf16 words into resident bf16 panels: `fill` writes W's 2·N·K bytes (row-major bf16, as a
   * safetensors file stores them) into the staging view it is given — straight from a file, so no other copy of
   * W is made — and asm/gemm.ts packBTBf16 packs them. The staging sits above the panels and is reused by the
   * next weight packed: pack the largest first and the module memory ends at the panels' bytes plus the last
   * (smaller) staging.
   */
  packBf16(N: number, K: number, fill: (bytes: Uint8Array) => void): Bf16Panels {
    if (!Number.isInteger(N) || !Number.isInteger(K) || N < 1 || K < 1)
      throw new ArgumentError('packBf16', 'a weight of N ≥ 1 rows and K ≥ 1 columns', [N, K]);
    const bp = align(this.residentTop);
    const bytes = packedColumns(N) * K * 2;
    const stage = align(bp + bytes);
    this.ensure(stage + N * K * 2);
    fill(new Uint8Array(this.memory.buffer, stage, N * K * 2));
    this.x.packBTBf16(stage, N, K, bp);
    this.residentTop = bp + bytes;
    return new Bf16Panels(this, bp, N, K, this.epoch);
  }

  /** out (K floats) = row r of the W packed in `w` (each bf16 word widened: w << 16), read from its panels. */
  rowBf16(w: Bf16Panels, r: number, out: Float32Array): Float32Array {
    this.checkPanels(w, w.N, w.K);
    if (!Number.isInteger(r) || r < 0 || r >= w.N) throw new ArgumentError('row', `an integer in [0, ${w.N})`, r);
    if (out.length !== w.K) throw new ArgumentError('out', `${w.K} floats`, out.length);
    const K = w.K;
    // group G = ⌊r/32⌋, its panel j = ⌊r/8⌋ mod 4, column r mod 8: element k at word (G·K + k)·32 + 8j + r mod 8
    const words = new Uint16Array(this.memory.buffer, w.ptr + Math.floor(r / GROUP) * K * GROUP * 2, K * GROUP);
    const bits = new Uint32Array(out.buffer, out.byteOffset, K);
    for (let k = 0, i = r % GROUP; k < K; k++, i += GROUP) bits[k] = words[i] << 16;
    return out;
  }

  private checkPanels(w: Bf16Panels, N: number, K: number): void {
    if (w.gemm !== this || w.epoch !== this.epoch)
      throw new ArgumentError(
        'weight',
        'bf16 panels packed in this SIMD instance since its last releaseResident',
        w.gemm !== this ? 'panels of another instance' : 'panels released since',
      );
    if (w.N !== N || w.K !== K) throw new ArgumentError('weight', `bf16 panels of ${N}×${K}`, `${w.N}×${w.K}`);
  }

  /** y (M×N) = x (M×K) · Wᵀ, W (N×K). `resident`: keep W packed for the next call with the same array. */
  linear(
    x: FloatArray,
    M: number,
    K: number,
    w: FloatArray | Bf16Panels,
    N: number,
    resident = true,
    out?: Float32Array,
  ): Float32Array {
    checkOut(out, M, N);
    return this.result(this.linearAt(x, M, K, w, N, resident), M * N, out);
  }

  /**
   * `linear` leaving y in the module's memory: its byte address (M·N float32, row-major), valid until the next
   * call that uses the scratch region — for a kernel that reads y there (lib/simd/nll.ts: logits never copied out).
   */
  linearAt(x: FloatArray, M: number, K: number, w: FloatArray | Bf16Panels, N: number, resident = true): number {
    if (w instanceof Bf16Panels) check('linear', x.length === M * K, `x (${M}×${K})`, x.length);
    else
      check('linear', x.length === M * K && w.length === N * K, `x (${M}×${K}) and W (${N}×${K})`, [
        x.length,
        w.length,
      ]);
    const { bp, top } = this.weightAt(w, N, K, resident);
    const ap = align(top);
    this.put(x, ap);
    return this.run(ap, M, K, bp, N, align(ap + M * K * 4), w instanceof Bf16Panels);
  }

  /**
   * Several products of the same x, y_i (M×N_i) = x (M×K) · W_iᵀ, as one hand-off between the threads (the fused
   * decode step's q/k/v, gate/up, Mamba-1's products of x: lib/model/fused_step.ts): each weight packed and kept
   * resident as `linear` keeps it (no stacked copy), y_i at out[M·(N_0 + … + N_{i−1}) …] (for one row: [y_0 | y_1 |
   * …]), every value the bits `linear` gives it. At most MAX_PARTS weights.
   */
  linearMany(
    x: FloatArray,
    M: number,
    K: number,
    ws: ReadonlyArray<{ w: FloatArray | Bf16Panels; N: number }>,
    out: Float32Array,
  ): Float32Array {
    check('linearMany', x.length === M * K, `x (${M}×${K})`, x.length);
    check('linearMany', ws.length >= 1 && ws.length <= MAX_PARTS, `1 to ${MAX_PARTS} weights`, ws.length);
    const total = ws.reduce((n, p) => n + p.N, 0);
    checkOut(out, M, total);
    const bps = ws.map((p) => this.weightAt(p.w, p.N, K, true).bp); // resident: the scratch starts above them all
    const ap = align(this.residentTop);
    this.put(x, ap);
    const parts: Part[] = [];
    let cp = align(ap + M * K * 4);
    for (const [i, p] of ws.entries()) {
      parts.push({ bp: bps[i], N: p.N, cp, bf16: p.w instanceof Bf16Panels });
      cp = align(cp + M * p.N * 4);
    }
    this.runParts(ap, M, K, parts);
    let at = 0;
    for (const p of parts) {
      out.set(new Float32Array(this.memory.buffer, p.cp, M * p.N), at);
      at += M * p.N;
    }
    return out;
  }

  /**
   * A gated MLP, y (M×O) = (silu(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ for x (M×K), W_gate and W_up (F×K), W_down (O×F), with
   * every intermediate left in the module's memory: x copied in once, gate and up as one hand-off between the
   * threads (`linearMany`), the SIMD SiLU (asm/activations.ts siluMul) in place there, and the down product
   * reading it where it lies; only y is copied out. The same operations on the same float32 values as `linear`,
   * `simdSiluMul` and `linear` one after another, so the same bits (spec/simd.spec.ts). Every weight is kept
   * resident (model weights); `out`: a buffer of M·O floats to reuse.
   */
  gatedMlp(
    x: FloatArray,
    M: number,
    K: number,
    w: { gate: FloatArray | Bf16Panels; up: FloatArray | Bf16Panels; down: FloatArray | Bf16Panels },
    F: number,
    O: number,
    out?: Float32Array,
  ): Float32Array {
    check('gatedMlp', x.length === M * K, `x (${M}×${K})`, x.length);
    checkOut(out, M, O);
    const bg = this.weightAt(w.gate, F, K, true).bp;
    const bu = this.weightAt(w.up, F, K, true).bp;
    const bd = this.weightAt(w.down, O, F, true).bp; // resident: the scratch starts above them all
    const n4 = (M * F + 3) & ~3; // the SiLU's whole f32x4 lanes (a pad lane's value is never read back)
    const ap = align(this.residentTop);
    const gp = align(ap + M * K * 4);
    const up = align(gp + n4 * 4);
    const sp = align(up + n4 * 4);
    this.ensure(sp + n4 * 4);
    this.put(x, ap);
    this.runParts(ap, M, K, [
      { bp: bg, N: F, cp: gp, bf16: w.gate instanceof Bf16Panels },
      { bp: bu, N: F, cp: up, bf16: w.up instanceof Bf16Panels },
    ]);
    this.x.siluMul(gp, up, sp, n4);
    return this.result(this.run(sp, M, F, bd, O, align(sp + n4 * 4), w.down instanceof Bf16Panels), M * O, out);
  }

  /**
   * Where W's packed panels are (packing a float W on first use, kept when `resident`), and the first byte free
   * above them and every resident weight (where a call's arrays may go).
   */
  private weightAt(w: FloatArray | Bf16Panels, N: number, K: number, resident: boolean): { bp: number; top: number } {
    if (w instanceof Bf16Panels) {
      this.checkPanels(w, N, K);
      return { bp: w.ptr, top: this.residentTop };
    }
    check('linear', w.length === N * K, `W (${N}×${K})`, w.length);
    const hit = resident ? this.packed.get(w) : undefined;
    if (hit && hit.N === N && hit.K === K) return { bp: hit.ptr, top: this.residentTop };
    const bytes = this.packedPanels(N, K);
    const slot = resident ? this.takeFree(bytes) : undefined; // the memory of a forgotten weight, if one fits
    const bp = slot ?? align(this.residentTop);
    const stage = align(Math.max(this.residentTop, bp + bytes));
    this.put(w, stage);
    this.x.packBT(stage, N, K, bp);
    if (resident) {
      if (slot === undefined) this.residentTop = bp + bytes;
      this.packed.set(w, { ptr: bp, N, K });
    }
    return { bp, top: Math.max(this.residentTop, bp + bytes) };
  }

  /** c (M×N) = a (M×K) · b (K×N); `out`: a buffer of M·N floats to reuse. */
  matmul(a: FloatArray, M: number, K: number, b: FloatArray, N: number, out?: Float32Array): Float32Array {
    check('matmul', a.length === M * K && b.length === K * N, `a (${M}×${K}) and b (${K}×${N})`, [a.length, b.length]);
    checkOut(out, M, N);
    const bp = align(this.residentTop);
    const stage = align(bp + this.packedPanels(N, K));
    this.put(b, stage);
    this.x.packBN(stage, K, N, bp);
    this.put(a, stage); // b is packed: its staging area is free again
    return this.result(this.run(stage, M, K, bp, N, align(stage + Math.max(M * K, K * N) * 4)), M * N, out);
  }

  /** c (M×N) = aᵀ · b for a (K×M), b (K×N): the weight gradient dW = dYᵀ·X; `out`: a buffer of M·N floats to reuse. */
  matmulTN(a: FloatArray, K: number, M: number, b: FloatArray, N: number, out?: Float32Array): Float32Array {
    check('matmulTN', a.length === K * M && b.length === K * N, `a (${K}×${M}) and b (${K}×${N})`, [
      a.length,
      b.length,
    ]);
    checkOut(out, M, N);
    const bp = align(this.residentTop);
    const stage = align(bp + this.packedPanels(N, K));
    this.put(b, stage);
    this.x.packBN(stage, K, N, bp);
    this.putTransposed(a, K, M, stage); // b is packed: its staging area is free again
    return this.result(this.run(stage, M, K, bp, N, align(stage + Math.max(K * M, K * N) * 4)), M * N, out);
  }

  /**
   * aᵀ (M×K) as float32 at byte `ptr`, for a (K×M): one pass in tiles of 32×32, rounding and transposing at once
   * (the module's scalar `transpose` after a copy took a fifth of the products' time in a training step).
   */
  private putTransposed(a: FloatArray, K: number, M: number, ptr: number): void {
    this.ensure(ptr + K * M * 4);
    const t = new Float32Array(this.memory.buffer, ptr, K * M);
    const T = 32;
    for (let k0 = 0; k0 < K; k0 += T)
      for (let i0 = 0; i0 < M; i0 += T) {
        const k1 = Math.min(K, k0 + T);
        const i1 = Math.min(M, i0 + T);
        for (let i = i0; i < i1; i++) for (let k = k0; k < k1; k++) t[i * K + k] = a[k * M + i];
      }
  }

  /** C (at cp, returned) = A (at ap) · packed B. */
  private run(ap: number, M: number, K: number, bp: number, N: number, cp: number, bf16 = false): number {
    this.runParts(ap, M, K, [{ bp, N, cp, bf16 }]);
    return cp;
  }

  /**
   * For each product i, C_i (M×N_i at cp_i) = A (M×K at ap) · packed B_i: one hand-off between the threads for
   * all of them (`linearMany`), their columns shared out as one run of units.
   */
  private runParts(ap: number, M: number, K: number, parts: ReadonlyArray<Part>): void {
    for (const p of parts) this.ensure(p.cp + M * p.N * 4);
    let flop = 0;
    let bytes = 0;
    let groups = 0;
    for (const p of parts) {
      const g = Math.ceil(p.N / GROUP);
      flop += 2 * M * p.N * K;
      bytes += g * GROUP * K * (p.bf16 ? 2 : 4);
      groups += g;
    }
    const big = flop >= MIN_PARALLEL_FLOP || bytes >= MIN_PARALLEL_BYTES;
    const helpers = big ? Math.min(this.workers.length, groups - 1) : 0;
    if (helpers === 0) {
      for (const p of parts) (p.bf16 ? this.x.gemmBf16 : this.x.gemm)(ap, p.bp, p.cp, M, p.N, K, 0, p.N, 0);
      return;
    }
    // units of whole panel groups; the caller claims from the front, 1/threads of what is left each time. Against
    // the shared counter of 4 chunks a thread that this replaced (every thread taking the next chunk, the caller
    // then waiting for each worker to report, asleep or not): a d512 decode step's 57 products + head with every
    // product shared, 4.72 → 4.06 ms on 2 threads; decode 5.30 → 5.01 ms/token (2026-12-05, one run, interleaved)
    // (each product's last unit may be part-filled: at most MAX_PARTS more than groups ÷ the units' groups)
    const width = Math.ceil(groups / (MAX_UNITS - MAX_PARTS)) * GROUP;
    const threads = helpers + 1;
    const j = this.job;
    let units = 0;
    for (const [i, p] of parts.entries()) {
      const o = PARTS + 5 * i;
      j[o] = units;
      j[o + 1] = p.bp;
      j[o + 2] = p.N;
      j[o + 3] = p.cp;
      j[o + 4] = p.bf16 ? 1 : 0;
      units += Math.ceil(p.N / width);
    }
    j[OPS] = units;
    j[OPS + 1] = width;
    j[OPS + 2] = ap;
    j[OPS + 3] = M;
    j[OPS + 4] = K;
    j[OPS + 5] = threads;
    j[OPS + 6] = parts.length;
    Atomics.store(j, DONE, 0);
    Atomics.store(j, CLAIM, units << 16); // published: from here on any thread may claim
    for (let w = 0; w < helpers; w++) {
      const k = this.workers[w];
      Atomics.store(k.ctrl, 0, ++k.gen);
      Atomics.notify(k.ctrl, 0);
    }
    for (;;) {
      const v = Atomics.load(j, CLAIM);
      const front = v & 0xffff;
      const back = v >>> 16;
      if (back <= front) break;
      const take = Math.ceil((back - front) / threads);
      if (Atomics.compareExchange(j, CLAIM, v, v + take) !== v) continue;
      piece(j, front, front + take, this.x.gemm, this.x.gemmBf16);
      Atomics.add(j, DONE, take);
    }
    // the workers are finishing their last pieces: spin for them a little, then sleep (the one that completes
    // the job notifies)
    for (const until = performance.now() + SPIN_MS; Atomics.load(j, DONE) !== units && performance.now() < until;);
    for (let d = Atomics.load(j, DONE); d !== units; d = Atomics.load(j, DONE)) Atomics.wait(j, DONE, d);
  }

  /** The n floats at byte cp, copied into `out` when given, else into a new array. */
  private result(cp: number, n: number, out?: Float32Array): Float32Array {
    const c = new Float32Array(this.memory.buffer, cp, n);
    if (!out) return copyOut(c);
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
   * The SIMD multiply-add peak of this build on this thread (asm/gemm.ts peakMadd: 12 independent f32x4 chains,
   * fused in the FMA build, a mul and an add in the baseline one), GFLOP/s per wall second and per CPU second,
   * each the best of `reps` runs of `rounds` rounds (96 flops a round): the ceiling of every product of this build.
   */
  maddPeak(rounds = 16_000_000, reps = 5): { wall: number; cpu: number } {
    let ms = Infinity;
    let cpuMs = Infinity;
    for (let r = 0; r < reps; r++) {
      const c0 = process.cpuUsage();
      const t = performance.now();
      if (!Number.isFinite(this.x.peakMadd(rounds, 0.5, 1))) throw new Error('peakMadd: not finite');
      ms = Math.min(ms, performance.now() - t);
      const c = process.cpuUsage(c0);
      cpuMs = Math.min(cpuMs, (c.user + c.system) / 1000);
    }
    const flop = 96 * rounds;
    return { wall: flop / ms / 1e6, cpu: flop / Math.max(cpuMs, 1e-3) / 1e6 };
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
    const f = this.free[i];
    const rest = f.bytes - align(bytes);
    if (rest >= 64) this.free[i] = { ptr: f.ptr + align(bytes), bytes: rest };
    else this.free.splice(i, 1);
    return f.ptr;
  }

  /** Forget every resident packed weight (their memory is reused). */
  releaseResident(): void {
    this.residentTop = this.base;
    this.epoch++;
    this.free = [];
    this.packed = new WeakMap(); // a WeakMap cannot be cleared: replace it
  }

  /** Bytes of packed weights kept resident. */
  get residentBytes(): number {
    return this.residentTop - this.base;
  }
}

/** The next 64-byte boundary at or above p (where every array is placed); arithmetic, not bitwise: p may pass 2³¹. */
export const align = (p: number) => Math.ceil(p / 64) * 64;

/**
 * A fresh (unshared) copy of a view of the module's memory. Not `view.slice()`: on a SharedArrayBuffer V8 copies
 * element by element (4M floats: 154 ms against 0.8 ms for `set`, Node 20 on this machine, 2026-12-04) — it was a
 * third of `mil eval`'s time on the vocabulary projection's logits.
 */
export function copyOut(view: Float32Array): Float32Array {
  const r = new Float32Array(view.length);
  r.set(view);
  return r;
}

/** y (rows × bias.length, float32) += bias, each bias value rounded to float32 first: the backend's biased linear. */
export function addBiasRows(y: Float32Array, rows: number, bias: ArrayLike<number>): void {
  const n = bias.length;
  for (let r = 0; r < rows; r++) for (let o = 0; o < n; o++) y[r * n + o] += Math.fround(bias[o]);
}

/** `out`, when given, must hold the M×N result (checked before any work). */
function checkOut(out: Float32Array | undefined, M: number, N: number): void {
  if (out && out.length !== M * N) throw new ArgumentError('out', `${M * N} floats (${M}×${N})`, out.length);
}

function check(what: string, ok: boolean, expected: string, actual: unknown): void {
  if (!ok) throw new ArgumentError(what, expected, actual);
}
