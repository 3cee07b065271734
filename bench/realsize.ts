/**
 * `npm run bench:realsize`: real shapes (issue 24). A random Llama-3.2-1B-shaped bf16 checkpoint made by
 * `mil init` in a temporary folder (all 16 layers by default; `--layers N` keeps the other dimensions: vocab
 * 128256, d 2048, GQA 32/8, head_dim 64, llama3 rope, tied), and its 50% Mamba-2 hybrid made by the streamed
 * `mil convert` (attention kept in the odd layers). For each model, backend and thread count, one child process
 * (bench/realsize_child.ts): load time, prefill tokens/s of a 300-token prompt, decode ms/token after it and
 * after a 2048-token context, and the process's peak RSS; a model that cannot fit a backend (wasm-simd's
 * module memory: float32 weights until they are packed in bf16) is reported as such, refused from the headers.
 * In the same run, PyTorch on the CPU (bench/torch_decode.py --prefill=batched: Debian's python3-torch,
 * float32, eager, its BLAS named — OpenBLAS with libopenblas0-pthread) on the same folders, 1 and 2 threads,
 * with its greedy tokens compared to ours. The paper's point, checked per row pair: the hybrid's decode at 2k
 * context below the teacher's (half the layers keep no KV cache to read).
 * mil init and mil convert run under /usr/bin/time (their peak RSS is reported too).
 *
 * Options: --layers N (16) · --prompt N (300) · --context N (2048) · --decode N (8 tokens measured) ·
 * --threads 1,2 · --backends wasm-simd (a list) · --torch-python PATH (/usr/bin/python3; --no-torch to skip) ·
 * --out DIR (bench/results). Writes DIR/realsize.{json,md} through the one writer.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFile } from '../lib/io/writer.js';
import { planModel } from '../lib/model/load.js';
import { sizeOf } from '../lib/tensor.js';
import { lastOf } from '../lib/checked.js';
import { torchEnv } from './timing.js';

const args = process.argv.slice(2);
const opt = (name: string) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : undefined);
const int = (name: string, dflt: number) => {
  const v = Number(opt(name) ?? dflt);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name}: expected a non-negative integer, got ${opt(name)}`);
  return v;
};
const LAYERS = int('--layers', 16);
const PROMPT = int('--prompt', 300);
const CONTEXT = int('--context', 2048);
const DECODE = int('--decode', 8);
const THREADS = (opt('--threads') ?? '1,2').split(',').map(Number);
const BACKENDS = (opt('--backends') ?? 'wasm-simd').split(',');
const TORCH_PY = opt('--torch-python') ?? '/usr/bin/python3';
const NO_TORCH = args.includes('--no-torch');
const OUT = opt('--out') ?? join(import.meta.dirname, 'results');
const ROOT = join(import.meta.dirname, '..');
const MIL = join(ROOT, 'bin', 'mil.js');

/** Run a command under /usr/bin/time: its seconds and peak RSS (bytes); stdout returned. */
function timed(cmd: string, argv: string[]): { s: number; maxRSS: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS_KB %M', cmd, ...argv], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const m = /MAXRSS_KB (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return { s: (performance.now() - t0) / 1000, maxRSS: Number(m[1]) * 1024, stdout: r.stdout };
}

const folderBytes = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((s, f) => s + statSync(join(dir, f)).size, 0);

interface Row {
  model: string;
  runner: string;
  threads: number;
  fits: boolean;
  reason?: string;
  loadS?: number;
  prefillTokPerS?: number;
  decodeMsShort?: number;
  prefillLongTokPerS?: number;
  decodeMsLong?: number;
  maxRSS: number;
  tokens?: number[];
  blas?: string;
}

const loadAtStart = loadavg()[0];
const tmp = mkdtempSync(join(tmpdir(), 'mil-bench-realsize-'));
const rows: Row[] = [];
const steps: Record<string, { s: number; maxRSS: number; bytes: number }> = {};
const reads: Record<string, { weights: number; kvShort: number; kvLong: number }> = {};
try {
  const teacher = join(tmp, 'teacher');
  const hybrid = join(tmp, 'hybrid');
  console.log(`# mil init: Llama-3.2-1B shape, ${LAYERS} layers, bf16 …`);
  const init = timed(process.execPath, [
    MIL,
    'init',
    '--config',
    join(ROOT, 'configs', 'llama-3.2-1b.json'),
    '--layers',
    String(LAYERS),
    '--dtype',
    'bf16',
    '--seed',
    '1',
    '--out',
    teacher,
  ]);
  steps['mil init'] = { s: init.s, maxRSS: init.maxRSS, bytes: folderBytes(teacher) };
  console.log('# mil convert (streamed): 50% attention, Mamba-2 …');
  const conv = timed(process.execPath, [
    MIL,
    'convert',
    '--teacher',
    teacher,
    '--out',
    hybrid,
    '--attention',
    '0.5',
    '--variant',
    'mamba2',
    '--seed',
    '1',
  ]);
  steps['mil convert'] = { s: conv.s, maxRSS: conv.maxRSS, bytes: folderBytes(hybrid) };
  for (const [k, v] of Object.entries(steps))
    console.log(
      `${k}: ${v.s.toFixed(1)} s, peak RSS ${(v.maxRSS / 1e6).toFixed(0)} MB, wrote ${(v.bytes / 1e6).toFixed(0)} MB`,
    );
  const models: Array<[string, string]> = [
    ['teacher (100% attn)', teacher],
    ['hybrid 50% (Mamba-2)', hybrid],
  ];
  for (const [name, dir] of models) {
    // the floor of decoding: what one token reads — every weight but the embedding's other rows (float32, as
    // every runner here holds them), and the KV cache of the attention layers at each context (float32)
    const m = planModel(dir);
    const attn = existsSync(join(dir, 'mamba_config.json'))
      ? (JSON.parse(readFileSync(join(dir, 'mamba_config.json'), 'utf8')).attn_layers as number[]).length
      : m.llama.numLayers;
    let params = 0;
    for (const [n, w] of m.plan.weights)
      params += n === 'model.embed_tokens.weight' ? w.info.shape[1] : sizeOf(w.info.shape);
    if (!m.plan.weights.has('lm_head.weight')) params += m.llama.vocabSize * m.llama.hiddenSize; // tied head
    const kv = (ctx: number) => attn * 2 * ctx * m.llama.numKvHeads * m.llama.headDim * 4;
    reads[name] = { weights: 4 * params, kvShort: kv(PROMPT), kvLong: kv(CONTEXT) };
  }
  for (const [name, dir] of models)
    for (const backend of BACKENDS)
      for (const threads of backend === 'wasm-simd' ? THREADS : [1]) {
        const job = { model: dir, backend, threads, prompt: PROMPT, context: CONTEXT, decode: DECODE };
        process.stderr.write(`  ${name} ${backend} ${threads} thr. … `);
        const r = spawnSync(
          process.execPath,
          ['--import', 'tsx', join(import.meta.dirname, 'realsize_child.ts'), JSON.stringify(job)],
          { encoding: 'utf8', maxBuffer: 1 << 24 },
        );
        if (r.status !== 0)
          throw new Error(`${name} on ${backend}: child failed (${r.status}): ${r.stderr.slice(-2000)}`);
        const j = JSON.parse(lastOf(r.stdout.trim().split('\n'))) as Omit<Row, 'model' | 'runner' | 'threads'>;
        rows.push({ model: name, runner: backend, threads, ...j });
        process.stderr.write(j.fits ? 'done\n' : `does not fit: ${j.reason}\n`);
      }
  const torchOk = !NO_TORCH && spawnSync(TORCH_PY, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
  if (!NO_TORCH && !torchOk)
    console.log(
      `# PyTorch not installed for ${TORCH_PY} (apt-get install python3-torch libopenblas0-pthread): no PyTorch rows`,
    );
  if (torchOk)
    for (const [name, dir] of models)
      for (const threads of THREADS) {
        process.stderr.write(`  ${name} PyTorch ${threads} thr. … `);
        const r = spawnSync(
          TORCH_PY,
          [
            join(import.meta.dirname, 'torch_decode.py'),
            dir,
            String(PROMPT),
            String(DECODE + 1),
            `--threads=${threads}`,
            '--prefill=batched',
            `--context=${CONTEXT}`,
            `--maxlen=${Math.max(PROMPT, CONTEXT) + DECODE + 8}`,
          ],
          { encoding: 'utf8', maxBuffer: 1 << 24, env: torchEnv(threads) },
        );
        if (r.status !== 0) throw new Error(`PyTorch on ${name} failed (${r.status}): ${r.stderr.slice(-2000)}`);
        const t = JSON.parse(lastOf(r.stdout.trim().split('\n')));
        rows.push({
          model: name,
          runner: `PyTorch ${t.torch} CPU`,
          threads,
          fits: true,
          loadS: t.load_s,
          prefillTokPerS: t.prefill_tok_per_s,
          decodeMsShort: t.ms_per_token,
          decodeMsLong: t.ms_per_token_context,
          maxRSS: t.max_rss,
          tokens: t.tokens,
          blas: t.blas,
        });
        process.stderr.write('done\n');
      }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const f = (v: number | undefined, d: number) => (v === undefined ? '—' : v.toFixed(d));
const ours = (model: string) => rows.find((r) => r.model === model && r.fits && !r.runner.startsWith('PyTorch'));
const equal = (r: Row) => {
  const o = ours(r.model);
  if (!r.tokens || !o?.tokens || o === r) return '';
  return `${r.tokens.filter((x, i) => x === o.tokens?.[i]).length}/${r.tokens.length}`;
};
// the paper's point: per runner and thread count, the hybrid's decode at 2k context against the teacher's
const pairs = rows
  .filter((r) => r.model.startsWith('teacher') && r.fits)
  .flatMap((t) => {
    const h = rows.find((r) => !r.model.startsWith('teacher') && r.runner === t.runner && r.threads === t.threads);
    return h?.fits && t.decodeMsLong !== undefined && h.decodeMsLong !== undefined
      ? [{ runner: t.runner, threads: t.threads, teacher: t.decodeMsLong, hybrid: h.decodeMsLong }]
      : [];
  });
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  shape: `Llama-3.2-1B (configs/llama-3.2-1b.json), ${LAYERS} layers, bf16`,
  prompt: PROMPT,
  context: CONTEXT,
  decodeTokens: DECODE,
  steps,
  /** the machine's 1-minute load average at the start and the end, and its cores: a shared machine's noise */
  load: { start: loadAtStart, end: loadavg()[0], cores: availableParallelism() },
};
const lines = [
  `# Real-size benchmark (${meta.date}, node ${meta.node})`,
  '',
  `Random ${meta.shape} checkpoint (mil init) and its 50% Mamba-2 hybrid (streamed mil convert, attention in the odd layers). One child process per row: load, prefill of a ${PROMPT}-token prompt, decode of ${DECODE} tokens after it and after a ${CONTEXT}-token context; peak RSS is the process's. PyTorch: bench/torch_decode.py --prefill=batched (float32, eager) on the same folders. Load average (1 min) ${meta.load.start.toFixed(1)} at the start, ${meta.load.end.toFixed(1)} at the end, on ${meta.load.cores} cores.`,
  '',
  '| step | s | peak RSS MB | wrote MB |',
  '| --- | ---: | ---: | ---: |',
  ...Object.entries(steps).map(
    ([k, v]) => `| ${k} | ${v.s.toFixed(1)} | ${(v.maxRSS / 1e6).toFixed(0)} | ${(v.bytes / 1e6).toFixed(0)} |`,
  ),
  '',
  `| model | runner | threads | load s | prefill tok/s (${PROMPT}) | decode ms/token at ${PROMPT} | decode ms/token at ${CONTEXT} | peak RSS MB | greedy tokens equal to ours |`,
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ...rows.map((r) =>
    r.fits
      ? `| ${r.model} | ${r.runner}${r.blas ? ` (${r.blas})` : ''} | ${r.threads} | ${f(r.loadS, 1)} | ${f(r.prefillTokPerS, 1)} | ${f(r.decodeMsShort, 1)} | ${f(r.decodeMsLong, 1)} | ${(r.maxRSS / 1e6).toFixed(0)} | ${equal(r)} |`
      : `| ${r.model} | ${r.runner} | ${r.threads} | does not fit: ${r.reason} | | | | ${(r.maxRSS / 1e6).toFixed(0)} | |`,
  ),
  '',
  `Decode at ${CONTEXT} context, hybrid against teacher (the paper's point: less KV cache to read):`,
  '',
  "Bytes one decoded token reads (weights as float32, embedding one row, tied head whole; KV cache float32): the floor that memory bandwidth sets, free of this machine's noise. A Mamba-2 layer reads more weights than the attention it replaced (in_proj has the z and dt rows); it wins once the KV cache it drops outweighs them:",
  '',
  `| model | weights MB | KV at ${PROMPT} MB | KV at ${CONTEXT} MB | total at ${PROMPT} MB | total at ${CONTEXT} MB |`,
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...Object.entries(reads).map(
    ([n, r]) =>
      `| ${n} | ${(r.weights / 1e6).toFixed(0)} | ${(r.kvShort / 1e6).toFixed(1)} | ${(r.kvLong / 1e6).toFixed(1)} | ${((r.weights + r.kvShort) / 1e6).toFixed(0)} | ${((r.weights + r.kvLong) / 1e6).toFixed(0)} |`,
  ),
  '',
  'Measured:',
  '',
  ...(pairs.length
    ? pairs.map(
        (p) =>
          `- ${p.runner}, ${p.threads} thr.: teacher ${p.teacher.toFixed(1)} ms/token, hybrid ${p.hybrid.toFixed(1)} ms/token — hybrid / teacher ${(p.hybrid / p.teacher).toFixed(2)}${p.hybrid < p.teacher ? '' : ' (NOT below)'}`,
      )
    : ['- no runner ran both models']),
  '',
];
writeFile(join(OUT, 'realsize.json'), JSON.stringify({ meta, reads, rows, pairs }, null, 1) + '\n');
writeFile(join(OUT, 'realsize.md'), lines.join('\n'));
console.log(lines.join('\n'));
console.log(`wrote ${OUT}/realsize.md and realsize.json`);
process.exit(0);
