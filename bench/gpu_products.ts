/**
 * The GPU training step's matrix products alone, in TFLOP/s (2·M·N·K per product), at the step's shapes (d 512,
 * SwiGLU 1536, 8 heads / 4 kv heads of 64, vocab 32,000, batch 8 × 256 = 2048 rows; the head by chunks of 512
 * rows): the tiled WGSL product (kernels/tiled_matmul.ts) against its peer measured in the same run, GPU.js's
 * one-thread-per-output kernels (kernels/train_layers.ts linearKernel / linearDxKernel / linearDwKernel), each
 * recorded into a resident chain and timed by ResidentChain.profile (each op submitted alone `--repeats` times,
 * less an empty submission). Run on the GPU machine: node dist/bench/gpu_products.js [--rows 2048] [--repeats 20]
 * [--no-peer] [--tiles a,b,c] (tile shapes of kernels/tiled_matmul.ts TILES, each timed; default a); --tiny (64
 * rows, small widths) checks that it runs (e.g. on Dawn's CPU adapter).
 * Prints one JSON line per product and tile: {product, M, N, K, tile, splitK, tiledMs, tiledTflops, peerMs,
 * peerTflops, speedup}.
 */
import { parseArgs } from 'node:util';
import { ResidentChain, type ChainBuffer } from '../kernels/resident_chain.js';
import { linearDwKernel, linearDxKernel, linearKernel, type TrainKernel } from '../kernels/train_layers.js';
import { TILES, tiledMatmul, type MatmulForm, type TileName } from '../kernels/tiled_matmul.js';
import type { WgslKernel } from '../kernels/resident_chain.js';

const { values } = parseArgs({
  options: {
    tiny: { type: 'boolean', default: false },
    rows: { type: 'string' },
    repeats: { type: 'string', default: '20' },
    'no-peer': { type: 'boolean', default: false },
    tiles: { type: 'string', default: 'c' },
  },
});
const tiny = values.tiny;
const N = Number(values.rows ?? (tiny ? 64 : 2048));
const [d, F, q, kv, V, R] = tiny ? [32, 96, 32, 16, 1000, 32] : [512, 1536, 512, 256, 32000, 512];
const repeats = Number(values.repeats);
const tiles = values.tiles.split(',').map((t) => {
  if (!(t in TILES)) throw new Error(`--tiles: ${t} is not one of ${Object.keys(TILES).join(', ')}`);
  return t as TileName;
});
const plain = { pairs: 1, bias: false, add: false };
const FWD: MatmulForm = { a: 'mk', b: 'nk', ...plain };
const DX: MatmulForm = { a: 'mk', b: 'kn', ...plain };
const DW: MatmulForm = { a: 'km', b: 'kn', ...plain };

/** name, rows (M of the forward), I, O (W (O, I)); each gives forward, dX and dW */
const shapes: Array<[string, number, number, number]> = [
  ['q|o', N, d, q],
  ['k|v', N, d, kv],
  ['gate|up', N, d, F],
  ['down', N, F, d],
  ['lm_head chunk', R, d, V],
];

const chain = await ResidentChain.create();
const filled = (name: string, n: number) =>
  chain.buffer(
    name,
    n,
    Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5),
  );
let program = 0;
const time = async (k: WgslKernel | TrainKernel, args: ChainBuffer[], out: ChainBuffer): Promise<number> => {
  const name = `p${program++}`;
  chain.record(name);
  if ('code' in k) await chain.wgsl('op', k, args, out);
  else await chain.kernel('op', k.key, k.source, k.constants, args, out);
  await chain.run({ pos: 0 }, [], name); // compiles
  const rows = await chain.profile({ pos: 0 }, name, repeats);
  return rows[0].ms;
};
for (const [name, M, I, O] of shapes) {
  const x = filled('x', M * I);
  const w = filled('w', O * I);
  const dy = filled('dy', M * O);
  const y = chain.buffer('y', M * O);
  const dx = chain.buffer('dx', M * I);
  const dw = chain.buffer('dW', O * I);
  const cases: Array<[string, MatmulForm, TrainKernel, ChainBuffer[], ChainBuffer, number, number, number]> = [
    [`${name} x·Wᵀ`, FWD, linearKernel(M, I, O, false, false), [x, w], y, M, O, I],
    [`${name} dX`, DX, linearDxKernel(M, I, [O]), [dy, w], dx, M, I, O],
    [`${name} dW`, DW, linearDwKernel(M, I, O), [dy, x], dw, O, I, M],
  ];
  for (const [product, form, peer, args, out, m, n, k] of cases) {
    const flop = 2 * m * n * k;
    const tf = (ms: number) => +(flop / (ms * 1e9)).toFixed(3);
    const peerMs = values['no-peer'] ? NaN : await time(peer, args, out);
    for (const tile of tiles) {
      const kernel = tiledMatmul(form, m, n, [k], undefined, tile);
      const tiledMs = await time(kernel, args, out);
      console.log(
        JSON.stringify({
          product,
          M: m,
          N: n,
          K: k,
          tile,
          splitK: kernel.split?.parts ?? 1,
          tiledMs: +tiledMs.toFixed(4),
          tiledTflops: tf(tiledMs),
          peerMs: +peerMs.toFixed(4),
          peerTflops: tf(peerMs),
          speedup: +(peerMs / tiledMs).toFixed(2),
        }),
      );
    }
  }
}
chain.destroy();
process.exit(0);
