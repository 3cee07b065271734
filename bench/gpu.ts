/**
 * `npm run bench:gpu`: decode time per token on the webgpu backend — the one-submission chain
 * (lib/model/gpu_decode.ts: one command encoder and one readback per token, caches and states resident) against
 * the per-op webgpu path (lib/model/hybrid.ts `forward` on getOps('webgpu'): a submission and a readback per
 * op) and against PyTorch on the same GPU in the same run (bench/peers/torch_gpu.py: eager, torch.compile
 * reduce-overhead, a CUDA graph; run only where `python3 -c "import torch; assert torch.cuda.is_available()"`
 * holds) — for a Llama (d 512, 8 layers, vocab 32,000, float32 random weights) and its 50% Mamba-2 hybrid, one
 * token after a 64-token prompt (the time of `--tokens` greedy tokens, divided).
 *
 *   node --import tsx bench/gpu.ts [--tiny] [--out DIR] [--tokens N] [--no-torch] [--no-per-op] [--python PATH]
 *                                  [--peer bench/peers/torch_gpu.py] [--torch-cpu]
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
import { forward, newCache, type HybridModel } from '../lib/model/hybrid.js';
import { argmax } from '../lib/model/generate.js';
import { layerKinds } from '../lib/model/mixers/block.js';
import { randomLlama } from '../lib/model/random.js';
import { getOps } from '../lib/ops.js';
import { unavailableReason } from '../kernels/runtime.js';
import { lookup } from '../lib/checked.js';

const args = process.argv.slice(2);
const flag = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const tiny = args.includes('--tiny');
const outDir = flag('out') ?? join(import.meta.dirname, 'results');
const python = flag('python') ?? 'python3';
/** --torch-cpu: the PyTorch peer's eager mode on the CPU (a check of the peer and its rows where there is no GPU) */
const torchCpu = args.includes('--torch-cpu');
const PROMPT = tiny ? 8 : 64;
const TOKENS = Number(flag('tokens') ?? (tiny ? 4 : 32));
const spec = tiny
  ? { vocab: 256, hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 8 }
  : { vocab: 32000, hidden: 512, intermediate: 1408, layers: 8, heads: 8, kvHeads: 4, headDim: 64 };

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

const teacher = randomLlama(spec, 7);
const models: Array<[string, HybridModel]> = [
  ['Llama (teacher)', teacher],
  ['50% Mamba-2 hybrid', convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 })],
];
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
const tokensOf: Record<string, Record<string, number[]>> = {};

for (const [name, m] of models) {
  tokensOf[name] = {};
  // the one-submission chain
  const dec = await GpuDecoder.create(m, { capacity: PROMPT + TOKENS + 1 });
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
    await once(); // warm-up
    const r = await once();
    tokensOf[name]['chain'] = r.ids;
    rows.push({
      model: name,
      path: `webgpu, one submission per token (${dec.chain.dispatches} kernels)`,
      ms_per_token: r.ms,
      submits_per_token: r.submits,
    });
    prefillRows.push({
      model: name,
      path: 'webgpu chain, the prompt in one submission (token after token)',
      ms: r.prefillMs,
    });
    console.log(`${name}: chain ${r.ms.toFixed(3)} ms/token, prefill ${r.prefillMs.toFixed(2)} ms`);
  } finally {
    dec.destroy();
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
    await once(2);
    const r = await once(TOKENS);
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
      ...(torchCpu ? { device: 'cpu', modes: ['eager'] } : { modes: ['eager', 'compile', 'cudagraph'] }),
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
      ms_per_token?: number;
      error?: string;
    }>)
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
const chainMs = (model: string) =>
  rows.find((r) => r.model === model && r.path.includes('one submission'))?.ms_per_token;
const md = [
  `# Decode per token on the GPU (bench/gpu.ts)`,
  '',
  `${date} · webgpu adapter: ${adapterName || 'unnamed'} · ${torchInfo}`,
  `Model: d ${spec.hidden}, ${spec.layers} layers, vocab ${spec.vocab}, float32 random weights; one token after a ${PROMPT}-token prompt (${TOKENS} tokens timed).`,
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
