/**
 * `npm run bench:gemv`: the few-row products of decode and verify, y = x·Wᵀ with x of M = 1–3 rows and W
 * resident — a memory-bound read of W — against its peer and the memory's floor, all in this run (issue #28):
 *   ours       lib/simd/gemm.ts (the few-row kernels of asm/gemm.ts: a row against a group of four 8-column
 *              panels interleaved by k, read as one stream; a second and third row read the group's block again
 *              from the cache), 1 and 2 threads, the build
 *              the wasm-simd backend runs (asm/gemm-fma.wasm where the engine has relaxed SIMD)
 *   tfjs-wasm  @tensorflow/tfjs-backend-wasm (XNNPACK), 1 thread, c = a·b with b laid out as it wants it
 *   onnxruntime  onnxruntime-node (its CPU provider, MLAS), 1 intra-op thread: a one-node MatMul graph with W
 *              (K×N) as an initializer, the ONNX protobuf written here with onnx-proto; session.run is async,
 *              so its time includes the promise round trip a caller of it pays
 *   ours bf16  the same kernels over bf16 panels (SimdGemm.packBf16: W's bf16 words, widened to float32 in
 *              registers — what a BF16 checkpoint decodes with on wasm-simd), 1 and 2 threads: 2·N·K bytes read
 *              per product; checked bit-identical to the float32 panels of the same (bf16-rounded) weights
 *   read       the memory read bandwidth: asm/gemm.ts readSum (eight f32x4 accumulators) over 256 MiB on one
 *              thread, timed interleaved with the products — the floor of a product that reads W once is
 *              4·N·K bytes ÷ this
 * Targets (issue #28): 1×4096 by 4096² ≥ 1.0× tfjs-wasm and ≥ 0.8 of the read bandwidth (1 thread). Issue #24:
 * bf16 panels read half the bytes, so a memory-bound product should take about half the float32 time.
 * Medians of 11 interleaved rounds (bench/timing.ts). Results: bench/results/gemv.{json,md}.
 */
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { SimdGemm, fmaWanted } from '../lib/simd/gemm.js';
import { Rng } from '../lib/rng.js';
import { writeFile } from '../lib/io/writer.js';
import { timeAll } from './timing.js';
import { startTfjs, tfjsLinear, transposed } from './peers/tfjs.js';
import { ortMatMul } from './peers/onnxruntime.js';

/** M×K×N of y = x·Wᵀ (W: N×K) */
const SHAPES: Array<[number, number, number]> = [
  [1, 4096, 4096], // the shape: one decoded token through a 4096² weight
  [2, 4096, 4096], // a verify window of 2 and 3 tokens: the weight still read once
  [3, 4096, 4096],
  [1, 512, 32000], // the d512 Llama's vocabulary projection (lm_head), the largest weight of its decode step
  [1, 512, 1536], // its gate+up-sized projection: 3 MiB, close to the caches
];
const READ_MIB = 256;

await startTfjs();
const FMA = fmaWanted();
const one = SimdGemm.load(1, FMA);
const two = SimdGemm.load(2, FMA);
// the bandwidth read runs in its own instance, so its 256 MiB never meets the products' resident weights
const reader = SimdGemm.load(1, false);
const n = (READ_MIB * 1024 * 1024) / 4;
const rp = reader.scratchStart();
reader.ensure(rp + n * 4);
new Float32Array(reader.buffer, rp, n).fill(1);
const read = () => {
  if (reader.kernels.readSum(rp, n) !== n) throw new Error('readSum: wrong sum');
};

const r = new Rng(1);
const rows: Array<Record<string, number | string>> = [];
for (const [M, K, N] of SHAPES) {
  const x = Float32Array.from({ length: M * K }, () => r.uniform(-1, 1));
  const w = Float32Array.from({ length: N * K }, () => r.uniform(-1, 1));
  const peer = tfjsLinear(x, M, K, w, N);
  const y = new Float32Array(M * N); // reused: no allocation inside the timing
  const session = await ortMatMul(M, K, N, transposed(w, N, K));
  const feeds = { x: new ort.Tensor('float32', x, [M, K]) };
  const check = (await session.run(feeds)).y.data as Float32Array;
  one.linear(x, M, K, w, N, true, y);
  // the weights rounded to bf16 (their high halves; ties away: enough for timing), packed as bf16 panels
  const words = Uint16Array.from(new Uint32Array(w.buffer), (u) => (u + 0x8000) >>> 16); // (N, K)
  const packedOne = one.packBf16(N, K, (b) => b.set(new Uint8Array(words.buffer)));
  const packedTwo = two.packBf16(N, K, (b) => b.set(new Uint8Array(words.buffer)));
  const wide = new Float32Array(Uint32Array.from(words, (v) => v * 65536).buffer); // (N, K)
  const yb = new Float32Array(M * N);
  const yw = one.linear(x, M, K, wide, N, false);
  if (!one.linear(x, M, K, packedOne, N, true, yb).every((v, i) => Object.is(v, yw[i])))
    throw new Error(`bf16 panels and float32 panels of the same weights differ on ${M}×${K}×${N}`);
  let worst = 0; // ours and onnxruntime compute the same product (float32, sums in other orders)
  for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(check[i] - y[i]));
  if (worst > 1e-3 * Math.sqrt(K)) throw new Error(`onnxruntime and ours differ by ${worst} on ${M}×${K}×${N}`);
  const [ours1, ours2, bf1, bf2, tfjs, onnxMs, readMs] = (await timeAll([
    () => one.linear(x, M, K, w, N, true, y),
    () => two.linear(x, M, K, w, N, true, y),
    () => one.linear(x, M, K, packedOne, N, true, yb),
    () => two.linear(x, M, K, packedTwo, N, true, yb),
    peer.run,
    () => session.run(feeds),
    read,
  ])) as [number, number, number, number, number, number, number];
  await session.release();
  peer.dispose();
  one.releaseResident();
  two.releaseResident();
  const bytes = 4 * N * K; // the weight, read once
  const bandwidth = (n * 4) / readMs / 1e6; // GB/s
  const gbs = (ms: number) => bytes / ms / 1e6;
  const row = {
    shape: `${M}×${K}×${N}`,
    oursMs1: ours1,
    oursMs2: ours2,
    bf16Ms1: bf1,
    bf16Ms2: bf2,
    tfjsMs: tfjs,
    onnxMs,
    oursGBs1: gbs(ours1),
    oursGBs2: gbs(ours2),
    tfjsGBs: gbs(tfjs),
    readGBs: bandwidth,
    oursGflops1: (2 * M * K * N) / ours1 / 1e6,
    tfjsGflops: (2 * M * K * N) / tfjs / 1e6,
    vsTfjs1: tfjs / ours1, // > 1: ours faster
    vsTfjs2: tfjs / ours2,
    vsOnnx1: onnxMs / ours1,
    ofBandwidth1: gbs(ours1) / bandwidth, // the target is ≥ 0.8
    ofBandwidth2: gbs(ours2) / bandwidth,
    bf16GBs1: gbs(bf1) / 2, // bf16: 2·N·K bytes
    bf16OfBandwidth1: gbs(bf1) / 2 / bandwidth,
    bf16OfBandwidth2: gbs(bf2) / 2 / bandwidth,
    f32OverBf16_1: ours1 / bf1, // > 1: bf16 faster (2 at most for a read-bound product)
    f32OverBf16_2: ours2 / bf2,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
one.close();
two.close();
reader.close();

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  fma: FMA,
  note: `y = x·Wᵀ, W (N×K) resident, float32 (bf16 columns: W as bf16 panels, 2·N·K bytes; "f32/bf16" = float32 panels' time ÷ bf16 panels' time). "× tfjs" = tfjs-wasm time / ours (> 1: ours faster; tfjs on 1 thread), "× onnx" the same against onnxruntime-node ${ort.env.versions.common} (1 thread); "of read" = weight bytes per product (4·N·K) ÷ time, over the read bandwidth of a ${READ_MIB} MiB eight-accumulator SIMD sum on one thread timed interleaved with the products (on 2 threads a product can exceed it: each core's own read). Ours: ${FMA ? 'asm/gemm-fma.wasm (fused multiply-add)' : 'asm/gemm.wasm (this engine has no relaxed SIMD)'}. Targets (issue #28): 1×4096×4096 ≥ 1.0× tfjs and ≥ 0.8 of read`,
};
const res = join(import.meta.dirname, 'results');
writeFile(join(res, 'gemv.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
const f = (v: unknown, d = 1) => (typeof v === 'number' ? v.toFixed(d) : '—');
let md = `# Few-row products (decode, verify): ours vs tfjs-wasm vs the read bandwidth (this machine, one run, ${meta.date})\n\n${meta.note}.\n\n`;
md +=
  '| M×K×N | ours 1 thr. ms | ours 2 thr. ms | tfjs-wasm ms | onnxruntime ms | ours 1 thr. GB/s | read GB/s | ours 1 thr. GFLOP/s | tfjs GFLOP/s | × tfjs, 1 thr. | × tfjs, ours 2 thr. | × onnx, 1 thr. | of read, 1 thr. | of read, 2 thr. | bf16 1 thr. ms | bf16 2 thr. ms | bf16 1 thr. GB/s | bf16 of read, 1 thr. | bf16 of read, 2 thr. | f32/bf16, 1 thr. | f32/bf16, 2 thr. |\n' +
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n';
for (const x of rows)
  md += `| ${x.shape} | ${f(x.oursMs1, 2)} | ${f(x.oursMs2, 2)} | ${f(x.tfjsMs, 2)} | ${f(x.onnxMs, 2)} | ${f(x.oursGBs1)} | ${f(x.readGBs)} | ${f(x.oursGflops1)} | ${f(x.tfjsGflops)} | ${f(x.vsTfjs1, 2)} | ${f(x.vsTfjs2, 2)} | ${f(x.vsOnnx1, 2)} | ${f(x.ofBandwidth1, 2)} | ${f(x.ofBandwidth2, 2)} | ${f(x.bf16Ms1, 2)} | ${f(x.bf16Ms2, 2)} | ${f(x.bf16GBs1)} | ${f(x.bf16OfBandwidth1, 2)} | ${f(x.bf16OfBandwidth2, 2)} | ${f(x.f32OverBf16_1, 2)} | ${f(x.f32OverBf16_2, 2)} |\n`;
writeFile(join(res, 'gemv.md'), md);
console.log(md);
process.exit(0);
