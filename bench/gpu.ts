/**
 * `npm run bench:gpu`: decode time per token, verify windows, prefill and speculative decoding on the webgpu
 * backend — the one-submission chain
 * (lib/model/gpu_decode.ts: one command encoder and one readback per token, caches and states resident) against
 * the per-op webgpu path (lib/model/hybrid.ts `forward` on getOps('webgpu'): a submission and a readback per
 * op) and against PyTorch on the same GPU in the same run (bench/peers/torch_gpu.py: eager, torch.compile
 * reduce-overhead, a CUDA graph; run only where `python3 -c "import torch; assert torch.cuda.is_available()"`
 * holds) — for a Llama (d 512, 8 layers, vocab 32,000, float32 random weights) and its 50% Mamba-2 hybrid, one
 * token after a 64-token prompt (the time of `--tokens` greedy tokens, divided).
 *
 *   node --import tsx bench/gpu.ts [--tiny | --shape d512|1b] [--quick] [--profile] [--torch-modes eager,compile,cudagraph] [--out DIR] [--tokens N] [--no-torch]
 *                                  [--no-per-op] [--python PATH] [--peer bench/peers/torch_gpu.py] [--torch-cpu]
 *                                  [--reductions wgsl,gpujs]
 *
 * Rows, for each model (the Llama and its 50% Mamba-2 hybrid):
 *   decode      ms per token: the chain (one submission a token), the per-op path, PyTorch (three ways)
 *   verify      ms per VERIFY of a window of s = 1 … 9 tokens (GpuDecoder.verify: one submission; PyTorch: one
 *               forward of s tokens), and its ratio to one decoded token (the issue's target: s = 9 ≤ 1.3×)
 *   prefill     the prompt: the chain's windows of parallel kernels (one submission), the per-op forward, PyTorch
 *   fixed       the fixed cost of one call: a one-kernel chain program submitted and its 2-float readback mapped,
 *               and its parts (a map, a queue drain, a turn of the event loop), ms per call (`fixedCost`)
 *   speculative the hybrid as target, a random 1-layer Llama as draft, greedy, K = 4 (both GPU decoders): ms per
 *               token, acceptance, and whether the tokens equal the plain chain's (they must, up to float32 ties)
 * --reductions: the chain with the decoder's WGSL reductions (kernels/decode_wgsl.ts, the default) and, as the baseline
 * in the same run, with GPU.js's one-thread-an-output kernels (GpuDecodeOptions.reductions 'gpujs'); each a row of
 * decode, prefill and verify (and, with --profile, its own profile). `--reductions wgsl` times the first alone.
 * --shape 1b: a Llama-3.2-1B shape (vocab 128,256, d 2048, 16 layers, 32/8 heads, F 8192; random float32 weights,
 * ~5 GB of host memory), prompt 64. --quick: 8 tokens timed, verify windows of 1, 5 and 9 only. Decode: each path
 * decoded for ≥ 2 s first (warm-up), then the median of 5 runs of the timed tokens (DECODE_RUNS, WARM_MS).
 * On the GPU machine (no Node there): bench/device-bundle.sh here; there, the bundle unpacked in /tmp/mil and, from
 * the repository root (where bench/peers/torch_gpu.py is found), `/tmp/mil/node /tmp/mil/dist/bench/gpu.js --out $OUT`.
 *
 * --tiny: d 32, 2 layers, vocab 256, prompt 8, 4 tokens (a check that the bench runs, e.g. on Dawn's CPU
 * adapter). Writes gpu.json and gpu.md to DIR (default bench/results). The ids of the chain and the per-op
 * path are compared (both float32; a near-tie may differ, reported, not asserted). No prompts; expected to take
 * ~2–4 minutes on the GPU machine, most of it torch.compile (not yet run there: the PyTorch peer's eager mode was
 * checked on a CPU torch with --torch-cpu, its compile and CUDA-graph modes not at all).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT } from '../lib/cli/exit.js';
import { writeFile } from '../lib/io/writer.js';
import { convert } from '../lib/model/convert.js';
import { GpuDecoder } from '../lib/model/gpu_decode.js';
import { gpuSpeculativeGreedy } from '../lib/decode/gpu_speculative.js';
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { argmax } from '../lib/model/generate.js';
import { layerKinds } from '../lib/model/mixers/block.js';
import { randomLlama } from '../lib/model/random.js';
import { getOps } from '../lib/ops.js';
import { unavailableReason } from '../kernels/runtime.js';
import { lastOf, lookup } from '../lib/checked.js';
import { ResidentChain } from '../lib/ops_resident.js';

const args = process.argv.slice(2);
const flag = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const tiny = args.includes('--tiny');
const outDir = flag('out') ?? join(import.meta.dirname, 'results');
const python = flag('python') ?? 'python3';
/** --torch-cpu: the PyTorch peer's eager mode on the CPU (a check of the peer and its rows where there is no GPU) */
const torchCpu = args.includes('--torch-cpu');
const quick = args.includes('--quick');
/** --profile: each kernel of the token step and the widest verify window timed alone (ResidentChain.profile) */
const profile = args.includes('--profile');
/** --reductions wgsl|gpujs|wgsl,gpujs (default both): the chain's reductions (GpuDecodeOptions.reductions), each a row */
const REDUCTIONS = (flag('reductions') ?? 'wgsl,gpujs').split(',') as Array<'wgsl' | 'gpujs'>;
if (!REDUCTIONS.length || REDUCTIONS.some((r) => r !== 'wgsl' && r !== 'gpujs') || REDUCTIONS[0] !== 'wgsl') {
  console.error(`bench/gpu.ts: --reductions: expected wgsl, optionally followed by gpujs, got ${REDUCTIONS.join(',')}`);
  process.exit(2);
}
const RED = { wgsl: 'WGSL reductions', gpujs: 'GPU.js reductions' } as const;
/** --torch-modes eager,compile,cudagraph (default all): the 1B shape's torch.compile alone outlasts a device command */
const torchModes = (flag('torch-modes') ?? 'eager,compile,cudagraph').split(',');
if (torchModes.some((m) => !['eager', 'compile', 'cudagraph'].includes(m))) {
  console.error(
    `bench/gpu.ts: --torch-modes: expected a comma list of eager, compile, cudagraph, got ${torchModes.join(',')}`,
  );
  process.exit(EXIT.usage);
}
const shape = tiny ? 'tiny' : (flag('shape') ?? 'd512');
const shapes = {
  tiny: { vocab: 256, hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 8 },
  d512: { vocab: 32000, hidden: 512, intermediate: 1408, layers: 8, heads: 8, kvHeads: 4, headDim: 64 },
  '1b': { vocab: 128256, hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, headDim: 64 },
};
if (!(shape in shapes)) {
  console.error(`bench/gpu.ts: --shape: expected one of ${Object.keys(shapes).join(', ')}, got ${shape}`);
  process.exit(EXIT.usage);
}
const spec = shapes[shape as keyof typeof shapes];
const PROMPT = tiny ? 8 : 64;
const TOKENS = Number(flag('tokens') ?? (tiny ? 4 : quick ? 8 : 32));
/** verify window sizes s (the last committed token + s − 1 drafts) */
const WINDOWS = tiny ? [1, 3] : quick ? [1, 5, 9] : [1, 2, 3, 4, 5, 6, 7, 8, 9];
const VERIFY_REPS = tiny ? 2 : quick ? 5 : 20;
/** decode runs of TOKENS tokens timed per path (the median is reported), after warm-ups of at least WARM_MS: the
 * 2026-12-05 H200 run timed the first path (the Llama's WGSL chain) after one 32-token warm-up, and its kernels,
 * profiled alone right after, took 2.1× the time of the same kernels of the same shapes in the hybrid measured
 * later in the same process (d512 RMSNorm 16.9 against 8.0 µs) — a GPU still coming up to its clocks */
const DECODE_RUNS = tiny ? 1 : 5;
const WARM_MS = tiny ? 0 : 2000;
const SPEC_K = 4;

const reason = await unavailableReason('webgpu');
if (reason) {
  console.error(`bench/gpu.ts: the webgpu backend is not available here: ${reason}`);
  process.exit(EXIT.io); // an unavailable backend
}
const adapter = await (
  globalThis as unknown as { navigator: { gpu: { requestAdapter(): Promise<{ info?: Record<string, string> }> } } }
).navigator.gpu.requestAdapter();
const adapterName = adapter.info
  ? `${adapter.info.vendor ?? ''} ${adapter.info.architecture ?? ''} ${adapter.info.device ?? ''} ${adapter.info.description ?? ''}`
      .replace(/\s+/g, ' ')
      .trim()
  : 'unknown';
console.log(
  `# webgpu adapter: ${adapterName || 'unnamed'}; model d ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab}; prompt ${PROMPT}, ${TOKENS} tokens timed`,
);

/**
 * The fixed cost of one call, the floor under any per-token figure: ms per call (median of FIXED_REPS after 20
 * warm-ups) of
 *   chain   a one-kernel chain program (2 threads) run with its 2-float readback (ResidentChain.run: one encoder,
 *           one submit, one mapAsync) — what every decoded token pays besides its kernels
 *   map     an encoder holding only the 2-float copy into a mappable buffer, submitted, mapAsync'd, unmapped
 *   drain   an empty submission and queue.onSubmittedWorkDone (no map)
 *   drain+map  the copy submitted, onSubmittedWorkDone awaited, then mapAsync (a map of work already done)
 *   tick    one turn of Node's event loop (await setImmediate): Dawn's binding polls the instance
 *           (wgpuInstanceProcessEvents) from setImmediate callbacks while a map or a drain is pending
 */
async function fixedCost(): Promise<Array<{ what: string; ms: number }>> {
  const chain = await ResidentChain.create();
  try {
    const src = chain.buffer('fixed src', 2);
    const out = chain.buffer('fixed out', 2);
    chain.record('fixed');
    await chain.kernel('fixed', 'bench.fixed', 'function (a) { return a[this.thread.x] + 1.0; }', {}, [src], out);
    chain.record();
    const dev = chain.device;
    const staging = dev.createBuffer({ size: 8, usage: 0x0001 | 0x0008 }); // MAP_READ | COPY_DST
    const copyEncoder = () => {
      const enc = dev.createCommandEncoder();
      enc.copyBufferToBuffer(out.buffer, 0, staging, 0, 8);
      return enc.finish();
    };
    const ways: Array<[string, () => Promise<unknown>]> = [
      ['chain: one kernel, submit, map 2 floats', () => chain.run({ pos: 0 }, [{ from: out }], 'fixed')],
      [
        'map: a 2-float copy, submit, map',
        async () => {
          dev.queue.submit([copyEncoder()]);
          await staging.mapAsync(1, 0, 8);
          staging.unmap();
        },
      ],
      [
        'drain: an empty submit, onSubmittedWorkDone',
        async () => {
          dev.queue.submit([dev.createCommandEncoder().finish()]);
          await dev.queue.onSubmittedWorkDone();
        },
      ],
      [
        'drain+map: the copy, onSubmittedWorkDone, then map',
        async () => {
          dev.queue.submit([copyEncoder()]);
          await dev.queue.onSubmittedWorkDone();
          await staging.mapAsync(1, 0, 8);
          staging.unmap();
        },
      ],
      ['tick: one turn of the event loop (setImmediate)', () => new Promise((r) => setImmediate(r))],
    ];
    const rows: Array<{ what: string; ms: number }> = [];
    for (const [what, call] of ways) {
      for (let i = 0; i < 20; i++) await call();
      const times: number[] = [];
      for (let i = 0; i < FIXED_REPS; i++) {
        const t = performance.now();
        await call();
        times.push(performance.now() - t);
      }
      rows.push({ what, ms: times.sort((a, b) => a - b)[Math.floor(FIXED_REPS / 2)] });
      console.log(`fixed cost: ${what}: ${lastOf(rows).ms.toFixed(4)} ms (median of ${FIXED_REPS})`);
    }
    staging.destroy();
    return rows;
  } finally {
    chain.destroy();
  }
}
const FIXED_REPS = tiny ? 20 : 200;
const fixedRows = await fixedCost();

const T0 = performance.now();
/** progress on stderr with the seconds since the models were made: at the 1B shape a phase takes minutes, and a
 * command cut at its time limit should say which one it was in */
const phase = (what: string) => console.error(`[${((performance.now() - T0) / 1000).toFixed(1)} s] ${what}`);
const teacher = randomLlama({ ...spec, float32: true }, 7);
phase('the random Llama made');
const models: Array<[string, HybridModel]> = [
  ['Llama (teacher)', teacher],
  ['50% Mamba-2 hybrid', convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 })],
];
phase('the 50% Mamba-2 hybrid converted');
const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919) % spec.vocab);

interface Row {
  model: string;
  path: string;
  ms_per_token: number | null;
  submits_per_token?: number;
  note?: string;
}
const rows: Row[] = [];
const prefillRows: Array<{ model: string; path: string; ms: number }> = [];
/** ms per verify of a window of s tokens, by model and path */
const verifyRows: Array<{ model: string; path: string; s: number; ms: number }> = [];
const specRows: Array<{ model: string; path: string; ms_per_token: number; acceptance: number; same: boolean }> = [];
const tokensOf: Record<string, Record<string, number[]>> = {};

for (const [name, m] of models) {
  tokensOf[name] = {};
  // the one-submission chain: the WGSL reductions (the default), then GPU.js's (the baseline, same run)
  for (const reductions of REDUCTIONS) {
    // the one-submission chain
    phase(`${name} (${RED[reductions]}): uploading`);
    const dec = await GpuDecoder.create(m, { capacity: PROMPT + TOKENS + 16, reductions });
    phase(`${name} (${RED[reductions]}): uploaded; warming up`);
    try {
      const once = async () => {
        dec.reset();
        // the prompt in one submission, then one submission per token
        const t0 = performance.now();
        let next = (await dec.prefill(prompt)).token;
        const prefillMs = performance.now() - t0;
        const ids: number[] = [];
        const s0 = dec.chain.counters.submits;
        const t = performance.now();
        for (let k = 0; k < TOKENS; k++) {
          ids.push(next);
          next = (await dec.step(next)).token;
        }
        const ms = (performance.now() - t) / TOKENS;
        return { ms, prefillMs, ids, submits: (dec.chain.counters.submits - s0) / TOKENS };
      };
      // warm-ups: at least one, and at least WARM_MS of decoding; then the median of DECODE_RUNS runs
      for (const w0 = performance.now(); ;) {
        await once();
        if (performance.now() - w0 >= WARM_MS) break;
      }
      const runs: Array<Awaited<ReturnType<typeof once>>> = [];
      for (let k = 0; k < DECODE_RUNS; k++) runs.push(await once());
      const r = { ...runs.sort((a, b) => a.ms - b.ms)[DECODE_RUNS >> 1] };
      r.prefillMs = runs.map((x) => x.prefillMs).sort((a, b) => a - b)[DECODE_RUNS >> 1]; // its own median
      tokensOf[name][reductions === 'wgsl' ? 'chain' : 'chain (GPU.js reductions)'] = r.ids;
      const same = reductions === 'wgsl' || r.ids.every((id, i) => id === lookup(lookup(tokensOf, name), 'chain')[i]);
      rows.push({
        model: name,
        path: `webgpu, one submission per token (${dec.chain.dispatches} kernels, ${RED[reductions]})`,
        ms_per_token: r.ms,
        submits_per_token: r.submits,
        ...(reductions === 'wgsl' ? {} : { note: `same ids as the WGSL chain: ${same ? 'yes' : 'NO'}` }),
      });
      prefillRows.push({
        model: name,
        path: `webgpu chain, the prompt in one submission (windows of ≤ ${dec.prefillWidth} rows, ${RED[reductions]})`,
        ms: r.prefillMs,
      });
      console.log(
        `${name} (${RED[reductions]}): chain ${r.ms.toFixed(3)} ms/token, prefill ${r.prefillMs.toFixed(2)} ms`,
      );
      // verify windows: [last, s − 1 drafts] after the prompt, each in one submission (rewound to the prompt by
      // length: the KV rows past it are overwritten; the Mamba states drift, which does not change the time)
      for (const sz of WINDOWS) {
        const drafts = r.ids.slice(0, sz - 1);
        dec.length = PROMPT - 1;
        await dec.verify(prompt[PROMPT - 1], drafts); // records the window (compiles its kernels)
        const t = performance.now();
        for (let k = 0; k < VERIFY_REPS; k++) {
          dec.length = PROMPT - 1;
          await dec.verify(prompt[PROMPT - 1], drafts);
        }
        const ms = (performance.now() - t) / VERIFY_REPS;
        verifyRows.push({ model: name, path: `webgpu chain, one submission, ${RED[reductions]}`, s: sz, ms });
        console.log(
          `${name} (${RED[reductions]}): verify of ${sz} tokens ${ms.toFixed(3)} ms (${(ms / r.ms).toFixed(2)}× a token)`,
        );
      }
      if (profile) {
        // where the time goes: each kernel of the one-token step and of the widest verify window submitted alone
        const wide = lastOf(WINDOWS);
        for (const [program, rows] of [
          ['main', 1],
          [`window${Math.max(2, wide)}`, wide],
        ] as const) {
          const prof = await dec.chain.profile({ pos: PROMPT - 1, rows }, program);
          const total = prof.reduce((a, x) => a + x.ms, 0);
          console.log(
            `${name} (${RED[reductions]}): profile of ${program} (each kernel alone), ${total.toFixed(3)} ms in all`,
          );
          for (const x of prof.slice(0, 25))
            console.log(
              `  ${x.label.padEnd(40)} ${x.ms.toFixed(3)} ms  ×${x.n}  ${((100 * x.ms) / total).toFixed(1)}%`,
            );
        }
      }
    } finally {
      dec.destroy();
    }
  }
  // speculative decoding: the hybrid as target, a random 1-layer Llama as draft (both GPU decoders), greedy
  if (m.mamba) {
    const draftModel = randomLlama({ ...spec, layers: 1, float32: true }, 9);
    const [target, draft] = [
      await GpuDecoder.create(m, { capacity: PROMPT + TOKENS + 16 }),
      await GpuDecoder.create(draftModel, { capacity: PROMPT + TOKENS + 16 }),
    ];
    try {
      const o = { K: SPEC_K, maxNewTokens: TOKENS, eos: [] };
      await gpuSpeculativeGreedy(target, draft, prompt, o); // warm-up: records and compiles every window
      const r = await gpuSpeculativeGreedy(target, draft, prompt, o);
      const ms = r.ms / TOKENS; // the rounds (the draft's catch-up on the prompt in the first), not the target's prefill
      const plain = lookup(lookup(tokensOf, name), 'chain');
      const same = r.tokens.every((id, i) => id === plain[i]);
      specRows.push({
        model: name,
        path: `webgpu, both models GPU decoders, K ${SPEC_K}, 1-layer random Llama draft`,
        ms_per_token: ms,
        acceptance: r.acceptanceRate,
        same,
      });
      console.log(
        `${name}: speculative ${ms.toFixed(3)} ms/token, acceptance ${r.acceptanceRate.toFixed(2)}, same ids: ${same}`,
      );
    } finally {
      target.destroy();
      draft.destroy();
    }
  }
  // the per-op webgpu path (the prompt prefilled at once, then one forward per token)
  if (!args.includes('--no-per-op')) {
    const ops = await getOps('webgpu');
    const once = async (n: number) => {
      const cache = newCache(m, 1);
      const t0 = performance.now();
      const pre = await forward(ops, m, [prompt], cache);
      const prefillMs = performance.now() - t0;
      let next = argmax(pre.data.subarray((PROMPT - 1) * spec.vocab));
      const ids: number[] = [];
      const t = performance.now();
      for (let k = 0; k < n; k++) {
        ids.push(next);
        next = argmax((await forward(ops, m, [[next]], cache)).data);
      }
      return { ms: (performance.now() - t) / n, ids, prefillMs };
    };
    let r: Awaited<ReturnType<typeof once>>;
    try {
      await once(2);
      r = await once(TOKENS);
    } catch (e) {
      // the per-op kernels take at most 2^24 elements an input (kernels/runtime.ts): the 1B shape's head is over
      const why = `not run: ${(e as Error).message.split('\n')[0]}`;
      rows.push({
        model: name,
        path: 'webgpu, per op (a submission and a readback each)',
        ms_per_token: NaN,
        note: why,
      });
      console.log(`${name}: per-op ${why}`);
      continue;
    }
    tokensOf[name]['per-op'] = r.ids;
    const same = r.ids.every((id, i) => id === lookup(lookup(tokensOf, name), 'chain')[i]);
    rows.push({
      model: name,
      path: 'webgpu, per op (a submission and a readback each)',
      ms_per_token: r.ms,
      note: same ? 'same ids as the chain' : 'ids differ from the chain (float32 near-tie?)',
    });
    prefillRows.push({ model: name, path: 'webgpu per op, the prompt as one forward (parallel ops)', ms: r.prefillMs });
    console.log(`${name}: per-op ${r.ms.toFixed(3)} ms/token, prefill ${r.prefillMs.toFixed(2)} ms`);
  }
}

// PyTorch on the same GPU, same shapes, in the same run
let torchInfo = 'not run (--no-torch)';
if (!args.includes('--no-torch')) {
  const probe = spawnSync(
    python,
    ['-c', `import torch; ${torchCpu ? '' : 'assert torch.cuda.is_available(); '}print(1)`],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  if (probe.status !== 0) torchInfo = `not run: ${python} has no torch${torchCpu ? '' : ' with CUDA'} here`;
  else {
    const mspec = {
      prompt: PROMPT,
      tokens: TOKENS,
      windows: WINDOWS,
      verify_reps: VERIFY_REPS,
      ...(torchCpu ? { device: 'cpu', modes: ['eager'] } : { modes: torchModes }),
      models: models.map(([name, m]) => ({
        name,
        vocab: spec.vocab,
        hidden: spec.hidden,
        intermediate: spec.intermediate,
        layers: spec.layers,
        heads: spec.heads,
        kv_heads: spec.kvHeads,
        head_dim: spec.headDim,
        attn_layers: layerKinds(m).flatMap((k, i) => (k === 'attention' ? [i] : [])),
        mamba: m.mamba
          ? {
              d_inner: m.mamba.dInner,
              d_xb: m.mamba.dXb,
              d_state: m.mamba.dState,
              n_heads: m.mamba.nHeads,
              d_conv: m.mamba.dConv,
            }
          : null,
      })),
    };
    // beside this file; compiled into dist/ (bench/device-bundle.sh) the .py stays in the source tree's bench/peers
    const peer =
      flag('peer') ??
      [join(import.meta.dirname, 'peers', 'torch_gpu.py'), join(process.cwd(), 'bench', 'peers', 'torch_gpu.py')].find(
        (f) => existsSync(f),
      ) ??
      'bench/peers/torch_gpu.py';
    const t = spawnSync(python, [peer, JSON.stringify(mspec)], {
      encoding: 'utf8',
      timeout: 270_000, // torch.compile takes most of it
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    // JSON lines: the versions first, then one row per (model, mode) as measured (a run cut short keeps its rows)
    const lines = (t.stdout ?? '')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const head = lines.find((l) => 'torch' in l) as { torch: string; device: string } | undefined;
    const label: Record<string, string> = {
      eager: 'PyTorch eager',
      compile: 'PyTorch torch.compile (reduce-overhead)',
      cudagraph: 'PyTorch CUDA graph',
    };
    for (const r of lines.filter((l) => 'mode' in l) as Array<{
      model: string;
      mode: string;
      kind?: 'verify' | 'prefill';
      s?: number;
      ms?: number;
      ms_per_token?: number;
      error?: string;
    }>)
      if (r.kind === 'verify' && r.ms !== undefined)
        verifyRows.push({ model: r.model, path: label[r.mode] ?? r.mode, s: r.s!, ms: r.ms });
      else if (r.kind === 'prefill' && r.ms !== undefined)
        prefillRows.push({ model: r.model, path: label[r.mode] ?? r.mode, ms: r.ms });
      else if (r.kind === undefined)
        rows.push({
          model: r.model,
          path: label[r.mode] ?? r.mode,
          ms_per_token: r.ms_per_token ?? null,
          ...(r.error ? { note: r.error } : {}),
        });
    torchInfo = head ? `PyTorch ${head.torch} on ${head.device}` : 'PyTorch did not start';
    if (t.status !== 0) torchInfo += ` (the peer stopped: exit ${t.status ?? t.signal}; see stderr above)`;
  }
}
console.log(`# torch: ${torchInfo}`);

const date = new Date().toISOString();
/** the chain's ms per token: the WGSL reductions' row, or GPU.js's where `path` names them */
const chainMs = (model: string, path = '') =>
  rows.find(
    (r) =>
      r.model === model &&
      r.path.includes('one submission') &&
      r.path.includes(path.includes(RED.gpujs) ? RED.gpujs : RED.wgsl),
  )?.ms_per_token;
const md = [
  `# Decode per token on the GPU (bench/gpu.ts)`,
  '',
  `${date} · webgpu adapter: ${adapterName || 'unnamed'} · ${torchInfo}`,
  `Model (${shape}): d ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab}, float32 random weights; one token after a ${PROMPT}-token prompt (${TOKENS} tokens timed).`,
  '',
  '| model | path | ms / token | × the chain | note |',
  '|---|---|---:|---:|---|',
  ...rows.map((r) => {
    const c = chainMs(r.model);
    const ratio = r.ms_per_token !== null && c ? (r.ms_per_token / c).toFixed(2) : '';
    return `| ${r.model} | ${r.path} | ${r.ms_per_token === null ? '—' : r.ms_per_token.toFixed(3)} | ${ratio} | ${[r.note ?? '', r.submits_per_token !== undefined ? `${r.submits_per_token} submit/token` : ''].filter(Boolean).join('; ')} |`;
  }),
  '',
  `Prefill of the ${PROMPT}-token prompt (ms for the whole prompt, tokens/s):`,
  '',
  '| model | path | ms | tokens/s |',
  '|---|---|---:|---:|',
  ...prefillRows.map((r) => `| ${r.model} | ${r.path} | ${r.ms.toFixed(2)} | ${((PROMPT * 1000) / r.ms).toFixed(0)} |`),
  '',
  `Verify window of s tokens after the prompt (ms per verify; × one decoded token on the same path):`,
  '',
  `| model | path | ${WINDOWS.map((w) => `s = ${w}`).join(' | ')} | s = ${WINDOWS[WINDOWS.length - 1]} × a token |`,
  `|---|---|${WINDOWS.map(() => '---:|').join('')}---:|`,
  ...[...new Set(verifyRows.map((r) => `${r.model}\u0000${r.path}`))].map((key) => {
    const [model, path] = key.split('\u0000');
    const of = verifyRows.filter((r) => r.model === model && r.path === path);
    const ms = (w: number) => of.find((r) => r.s === w)?.ms;
    const token = path.startsWith('webgpu')
      ? chainMs(model, path)
      : rows.find((r) => r.model === model && r.path === path)?.ms_per_token;
    const last = ms(WINDOWS[WINDOWS.length - 1]);
    return `| ${model} | ${path} | ${WINDOWS.map((w) => ms(w)?.toFixed(3) ?? '—').join(' | ')} | ${last !== undefined && token ? (last / token).toFixed(2) : ''} |`;
  }),
  '',
  `Fixed cost of one call (ms, median of ${FIXED_REPS}): the floor under the per-token figures above`,
  '',
  '| what | ms |',
  '|---|---:|',
  ...fixedRows.map((r) => `| ${r.what} | ${r.ms.toFixed(4)} |`),
  '',
  `Speculative decoding, greedy (${TOKENS} tokens after the prompt; ms per token after the target's prefill; the draft's prefill of the prompt is in its first round):`,
  '',
  '| model | path | ms / token | × plain chain decoding | acceptance | same tokens as plain |',
  '|---|---|---:|---:|---:|---|',
  ...specRows.map((r) => {
    const c = chainMs(r.model);
    return `| ${r.model} | ${r.path} | ${r.ms_per_token.toFixed(3)} | ${c ? (r.ms_per_token / c).toFixed(2) : ''} | ${r.acceptance.toFixed(2)} | ${r.same ? 'yes' : 'NO'} |`;
  }),
  '',
].join('\n');
writeFile(
  join(outDir, 'gpu.json'),
  JSON.stringify(
    {
      date,
      adapter: adapterName,
      torch: torchInfo,
      spec,
      prompt: PROMPT,
      tokens: TOKENS,
      rows,
      prefill: prefillRows,
      verify: verifyRows,
      speculative: specRows,
      fixed: fixedRows,
      ids: tokensOf,
    },
    null,
    1,
  ) + '\n',
);
writeFile(join(outDir, 'gpu.md'), md);
console.log(md);
console.log(`wrote ${outDir}/gpu.md and gpu.json`);
process.exit(0);
