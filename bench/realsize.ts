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
 * context below the teacher's (half the layers keep no KV cache to read). Speculative decoding at this shape:
 * each model verifies, its own first --spec-draft-layers layers draft (bench/realsize_child.ts). Every row gives
 * wall and CPU seconds (the machine is shared: CPU seconds are the steadier figure) and peak RSS against the
 * issue's bounds: generating ≤ 1.3 × the checkpoint's bytes + the caches; mil convert ≤ the teacher's bytes + two
 * of its layers. mil init and mil convert run under /usr/bin/time (peak RSS, user + system seconds).
 *
 * Options: --layers N (16) · --prompt N (300) · --context N (2048; 0: none) · --decode N (8 tokens measured) ·
 * --threads 1,2 · --backends wasm-simd (a list) · --spec teacher,hybrid (none: no speculative rows) ·
 * --spec-draft-layers N (2) · --spec-k K (4) · --spec-decode N (16 new tokens: the draft's prefill of the prompt is
 * in the speculative decode time, as lib/decode/compare.ts counts it) · --spec-threads N (the most of --threads) · --torch-python PATH
 * (/usr/bin/python3; --no-torch to skip) · --out DIR (bench/results; docs/results for the docs' copy) ·
 * --render JSON: only write DIR/realsize.md from a report made before (the docs' table from the bench's JSON).
 * Writes DIR/realsize.{json,md} through the one writer.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus, hostname, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { writeFile } from '../lib/io/writer.js';
import { planModel } from '../lib/model/load.js';
import { sizeOf } from '../lib/tensor.js';
import { lastOf } from '../lib/checked.js';
import type { Comparison } from '../lib/decode/compare.js';
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
const SPEC_MODELS = (opt('--spec') ?? 'teacher,hybrid').split(',').filter((x) => x !== '' && x !== 'none');
const SPEC_DRAFT = int('--spec-draft-layers', 2);
const SPEC_K = int('--spec-k', 4);
const SPEC_DECODE = int('--spec-decode', 16);
const SPEC_THREADS = int('--spec-threads', Math.max(...THREADS));
const OUT = opt('--out') ?? join(import.meta.dirname, 'results');
const ROOT = join(import.meta.dirname, '..');
const MIL = join(ROOT, 'bin', 'mil.js');

/** Run a command under /usr/bin/time: its wall and CPU seconds (user + system) and peak RSS (bytes). */
function timed(cmd: string, argv: string[]): { s: number; cpuS: number; maxRSS: number } {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS_KB %M CPU %U %S', cmd, ...argv], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  const m = /MAXRSS_KB (\d+) CPU ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return { s: (performance.now() - t0) / 1000, cpuS: Number(m[2]) + Number(m[3]), maxRSS: Number(m[1]) * 1024 };
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
  /** CPU seconds of the process (all its threads): loading, the prompt's prefill, one decoded token */
  cpu?: { load: number; prefill: number; decodePerToken: number };
  maxRSS: number;
  /** the memory bound of generating: 1.3 × the checkpoint's bytes + the caches (float32 KV at prompt + decode) */
  boundBytes?: number;
  tokens?: number[];
  blas?: string;
}

/** Speculative decoding at the 1B shape: the model verifies, its own first layers draft (lib/decode/compare.ts). */
interface SpecRow {
  model: string;
  runner: string;
  threads: number;
  draftLayers: number;
  K: number;
  loadS: number;
  plainMsPerToken: number;
  specMsPerToken: number;
  acceptance: number;
  tokensPerVerify: number;
  speedup: number;
  /** the draft's share of the speculative decode time (its prefill of the prompt included) */
  draftShare: number;
  identical: boolean;
  cpuS: number;
  maxRSS: number;
  boundBytes: number;
}

interface Step {
  s: number;
  cpuS: number;
  maxRSS: number;
  bytes: number;
  /** mil convert: the issue's bound on its peak RSS, the teacher's bytes + two of its layers */
  boundBytes?: number;
}

interface Report {
  meta: {
    date: string;
    node: string;
    machine: string;
    shape: string;
    prompt: number;
    context: number;
    decodeTokens: number;
    specDecodeTokens?: number;
    steps: Record<string, Step>;
    load: { start: number; end: number; cores: number };
  };
  reads: Record<string, { weights: number; kvShort: number; kvLong: number }>;
  rows: Row[];
  spec: SpecRow[];
  pairs: Array<{ runner: string; threads: number; teacher: number; hybrid: number }>;
}

/** The child's JSON line (bench/realsize_child.ts). */
function child(job: object): Record<string, unknown> {
  // from the sources through tsx, or compiled (bench/device-bundle.sh: dist/bench/*.js, no tsx on the GPU machine)
  const compiled = import.meta.filename.endsWith('.js');
  const r = spawnSync(
    process.execPath,
    [
      ...(compiled ? [] : ['--import', 'tsx']),
      join(import.meta.dirname, compiled ? 'realsize_child.js' : 'realsize_child.ts'),
      JSON.stringify(job),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  if (r.status !== 0) throw new Error(`child ${JSON.stringify(job)} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(lastOf(r.stdout.trim().split('\n'))) as Record<string, unknown>;
}

/** Run the models and peers; the report. */
function measure(): Report {
  const loadAtStart = loadavg()[0];
  const tmp = mkdtempSync(join(tmpdir(), 'mil-bench-realsize-'));
  const rows: Row[] = [];
  const spec: SpecRow[] = [];
  const steps: Record<string, Step> = {};
  const reads: Report['reads'] = {};
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
    steps['mil init'] = { ...init, bytes: folderBytes(teacher) };
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
    // the bound: the teacher's bytes + two of its layers (as stored)
    const tp = planModel(teacher);
    let layer0 = 0;
    for (const [n, w] of tp.plan.weights) if (n.startsWith('model.layers.0.')) layer0 += w.info.end - w.info.begin;
    steps['mil convert'] = { ...conv, bytes: folderBytes(hybrid), boundBytes: folderBytes(teacher) + 2 * layer0 };
    for (const [k, v] of Object.entries(steps))
      console.log(
        `${k}: ${v.s.toFixed(1)} s (${v.cpuS.toFixed(1)} CPU s), peak RSS ${(v.maxRSS / 1e6).toFixed(0)} MB, wrote ${(v.bytes / 1e6).toFixed(0)} MB`,
      );
    const models: Array<[string, string]> = [
      ['teacher (100% attn)', teacher],
      ['hybrid 50% (Mamba-2)', hybrid],
    ];
    const kvAt: Record<string, (ctx: number) => number> = {};
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
      kvAt[name] = kv;
      reads[name] = { weights: 4 * params, kvShort: kv(PROMPT), kvLong: kv(CONTEXT) };
    }
    const bound = (name: string, dir: string, tokens: number) => 1.3 * folderBytes(dir) + (kvAt[name]?.(tokens) ?? 0);
    for (const [name, dir] of models)
      for (const backend of BACKENDS)
        for (const threads of backend === 'wasm-simd' ? THREADS : [1]) {
          process.stderr.write(`  ${name} ${backend} ${threads} thr. … `);
          const j = child({ model: dir, backend, threads, prompt: PROMPT, context: CONTEXT, decode: DECODE }) as Omit<
            Row,
            'model' | 'runner' | 'threads'
          >;
          rows.push({
            model: name,
            runner: backend,
            threads,
            ...j,
            boundBytes: bound(name, dir, Math.max(PROMPT, CONTEXT) + DECODE + 1),
          });
          process.stderr.write(j.fits ? 'done\n' : `does not fit: ${j.reason}\n`);
        }
    for (const [name, dir] of models.filter(([n]) => SPEC_MODELS.some((s) => n.startsWith(s))))
      for (const backend of BACKENDS) {
        process.stderr.write(
          `  ${name} ${backend} speculative (draft: its first ${SPEC_DRAFT} layers, K ${SPEC_K}) … `,
        );
        const j = child({
          model: dir,
          backend,
          threads: SPEC_THREADS,
          prompt: PROMPT,
          context: 0,
          decode: SPEC_DECODE,
          speculative: { draftLayers: SPEC_DRAFT, K: SPEC_K },
        }) as { fits: boolean; reason?: string; loadS: number; spec: Comparison; cpu: { run: number }; maxRSS: number };
        if (!j.fits) {
          process.stderr.write(`does not fit: ${j.reason}\n`);
          continue;
        }
        const c = j.spec;
        spec.push({
          model: name,
          runner: backend,
          threads: SPEC_THREADS,
          draftLayers: SPEC_DRAFT,
          K: SPEC_K,
          loadS: j.loadS,
          plainMsPerToken: c.plainDecodeMs / c.newTokens,
          specMsPerToken: c.specDecodeMs / c.newTokens,
          acceptance: c.acceptance,
          tokensPerVerify: c.tokensPerVerify,
          speedup: c.speedup,
          draftShare: c.draftMs / c.specDecodeMs,
          identical: c.identical,
          cpuS: j.cpu.run,
          maxRSS: j.maxRSS,
          // the draft shares the target's tensors: the target's bound, plus the draft's caches (at most the target's)
          boundBytes:
            bound(name, dir, PROMPT + SPEC_DECODE + SPEC_K + 1) +
            (kvAt[name]?.(PROMPT + SPEC_DECODE + SPEC_K + 1) ?? 0),
        });
        process.stderr.write('done\n');
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
              ...(CONTEXT > 0 ? [`--context=${CONTEXT}`] : []),
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
            cpu: { load: t.load_cpu_s, prefill: t.cpu_s.prefill, decodePerToken: t.cpu_s.decode_per_token },
            maxRSS: t.max_rss,
            tokens: t.tokens,
            blas: t.blas,
          });
          process.stderr.write('done\n');
        }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
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
    machine: `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB (${hostname()})`,
    shape: `Llama-3.2-1B (configs/llama-3.2-1b.json), ${LAYERS} layers, bf16`,
    prompt: PROMPT,
    context: CONTEXT,
    decodeTokens: DECODE,
    specDecodeTokens: SPEC_DECODE,
    steps,
    /** the machine's 1-minute load average at the start and the end, and its cores: a shared machine's noise */
    load: { start: loadAtStart, end: loadavg()[0], cores: availableParallelism() },
  };
  return { meta, reads, rows, spec, pairs };
}

const f = (v: number | undefined, d: number) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
const mb = (b: number) => (b / 1e6).toFixed(0);

/** The markdown tables of a report (bench/results/realsize.md and, with --out docs/results, the docs' copy). */
function render(rep: Report): string {
  const { meta, reads, rows, spec, pairs } = rep;
  const ours = (model: string) => rows.find((r) => r.model === model && r.fits && !r.runner.startsWith('PyTorch'));
  const equal = (r: Row) => {
    const o = ours(r.model);
    if (!r.tokens || !o?.tokens || o === r) return '';
    return `${r.tokens.filter((x, i) => x === o.tokens?.[i]).length}/${r.tokens.length}`;
  };
  const long = meta.context > 0;
  return [
    `# Real-size benchmark (bench/realsize.ts, ${meta.date}, node ${meta.node})`,
    '',
    `Machine: ${meta.machine ?? 'not recorded'}. Load average (1 min) ${meta.load.start.toFixed(1)} at the start, ${meta.load.end.toFixed(1)} at the end, on ${meta.load.cores} cores: the machine is shared by several developers, so every time is given as wall seconds **and** the CPU seconds the process used (all its threads); the CPU seconds are the steadier figure, wall time includes waiting for a core. Ratios only between rows of this one run.`,
    '',
    `Random ${meta.shape} checkpoint (\`mil init\`) and its 50% Mamba-2 hybrid (streamed \`mil convert\`, attention in the odd layers). One child process per row: load, prefill of a ${meta.prompt}-token prompt, greedy decode of ${meta.decodeTokens} tokens after it${long ? ` and after a ${meta.context}-token context` : ''}; peak RSS is the process's own (VmHWM; PyTorch: getrusage maxrss). wasm-simd: bf16 checkpoint matrices kept as bf16 panels in the module, widened in the micro-kernel. PyTorch: bench/torch_decode.py --prefill=batched (weights widened to float32 at load, eager, the BLAS named) on the same folders. onnxruntime-node: no row at this shape — bench/peers/onnxruntime.ts (ortLlamaDecoder) builds a plain Llama's KV-cache decode graph with its weights as float32 initializers inside the protobuf: 4.9 GB here, over protobuf's 2 GiB message limit (it would need ONNX external data), and the model, the serialized graph and the session's copy together need ~15 GB, over the ~5 GB one process may take on this shared machine; it has no graph of the Mamba-2 hybrid. bench/gemv.ts compares the products alone against onnxruntime's MLAS.`,
    '',
    '| step | wall s | CPU s | peak RSS MB | bound MB | wrote MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...Object.entries(meta.steps).map(
      ([k, v]) =>
        `| ${k} | ${v.s.toFixed(1)} | ${f(v.cpuS, 1)} | ${mb(v.maxRSS)} | ${v.boundBytes ? `${mb(v.boundBytes)} (teacher + 2 layers)${v.maxRSS <= v.boundBytes ? '' : ' EXCEEDED'}` : ''} | ${mb(v.bytes)} |`,
    ),
    '',
    `| model | runner | threads | load s (CPU s) | prefill tok/s (${meta.prompt}) | prefill CPU s | decode ms/token at ${meta.prompt} | decode CPU ms/token |${long ? ` decode ms/token at ${meta.context} |` : ''} peak RSS MB | bound MB (1.3× checkpoint + caches) | greedy tokens equal to ours |`,
    `| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |${long ? ' ---: |' : ''} ---: | ---: | --- |`,
    ...rows.map((r) =>
      r.fits
        ? `| ${r.model} | ${r.runner}${r.blas ? ` (${r.blas})` : ''} | ${r.threads} | ${f(r.loadS, 1)} (${f(r.cpu?.load, 1)}) | ${f(r.prefillTokPerS, 1)} | ${f(r.cpu?.prefill, 1)} | ${f(r.decodeMsShort, 0)} | ${f(r.cpu ? 1000 * r.cpu.decodePerToken : undefined, 0)} |${long ? ` ${f(r.decodeMsLong, 0)} |` : ''} ${mb(r.maxRSS)} | ${r.boundBytes ? `${mb(r.boundBytes)}${r.maxRSS <= r.boundBytes ? '' : ' EXCEEDED'}` : '—'} | ${equal(r)} |`
        : `| ${r.model} | ${r.runner} | ${r.threads} | does not fit: ${r.reason} | | | | |${long ? ' |' : ''} ${mb(r.maxRSS)} | | |`,
    ),
    '',
    ...(spec.length
      ? [
          `Speculative decoding (Algorithm 2, greedy, lib/decode/compare.ts: the same prompt decoded plainly and speculatively in the same process, both warmed up; ${meta.specDecodeTokens ?? meta.decodeTokens} new tokens after the ${meta.prompt}-token prompt). The draft is the target's own first layers with its final norm and head (truncateLayers: the same tensors, no second copy in memory). The weights are random, so what the draft proposes agrees with the target only as far as the first layers already decide the argmax — acceptance says how often; an unrelated random draft would be accepted ~never (1 in 128,256). Acceptance near 1 here is an artefact of random weights (the embedding dominates the residual stream), not a figure for trained models. The draft's share includes its own prefill of the prompt, which lib/decode/compare.ts counts in the speculative decode time and which computes the 128,256-wide head at every prompt position: over this few new tokens it dominates, so the speedup says nothing yet about long generations.`,
          '',
          '| target | runner | threads | draft | K | plain ms/token | speculative ms/token | speedup | draft share | acceptance | tokens/verify | same tokens as plain | CPU s (whole comparison) | peak RSS MB | bound MB |',
          '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |',
          ...spec.map(
            (s) =>
              `| ${s.model} | ${s.runner} | ${s.threads} | its first ${s.draftLayers} layers | ${s.K} | ${s.plainMsPerToken.toFixed(0)} | ${s.specMsPerToken.toFixed(0)} | ${s.speedup.toFixed(2)} | ${(100 * s.draftShare).toFixed(0)}% | ${s.acceptance.toFixed(2)} | ${s.tokensPerVerify.toFixed(2)} | ${s.identical ? 'yes' : 'NO'} | ${s.cpuS.toFixed(0)} | ${mb(s.maxRSS)} | ${mb(s.boundBytes)}${s.maxRSS <= s.boundBytes ? '' : ' EXCEEDED'} |`,
          ),
          '',
        ]
      : []),
    "Bytes one decoded token reads (weights as float32, embedding one row, tied head whole; KV cache float32): the floor that memory bandwidth sets, free of this machine's noise. A Mamba-2 layer reads more weights than the attention it replaced (in_proj has the z and dt rows); it wins once the KV cache it drops outweighs them:",
    '',
    `| model | weights MB | KV at ${meta.prompt} MB |${long ? ` KV at ${meta.context} MB |` : ''} total at ${meta.prompt} MB |${long ? ` total at ${meta.context} MB |` : ''}`,
    `| --- | ---: | ---: | ---: |${long ? ' ---: | ---: |' : ''}`,
    ...Object.entries(reads).map(
      ([n, r]) =>
        `| ${n} | ${mb(r.weights)} | ${(r.kvShort / 1e6).toFixed(1)} |${long ? ` ${(r.kvLong / 1e6).toFixed(1)} |` : ''} ${mb(r.weights + r.kvShort)} |${long ? ` ${mb(r.weights + r.kvLong)} |` : ''}`,
    ),
    '',
    'Same-run ratios in CPU seconds (the steadier figure on this shared machine), PyTorch over ours — above 1: ours used less CPU:',
    '',
    ...rows
      .filter((r) => r.runner.startsWith('PyTorch') && r.cpu)
      .flatMap((t) => {
        const o = rows.find(
          (r) => r.model === t.model && r.threads === t.threads && r.fits && !r.runner.startsWith('PyTorch'),
        );
        return o?.cpu && t.cpu
          ? [
              `- ${t.model}, ${t.threads} thr. (${o.runner} vs ${t.runner}): prefill ${(t.cpu.prefill / o.cpu.prefill).toFixed(2)}×, decode per token ${(t.cpu.decodePerToken / o.cpu.decodePerToken).toFixed(2)}×, load ${(t.cpu.load / o.cpu.load).toFixed(2)}×; peak RSS ${(t.maxRSS / o.maxRSS).toFixed(2)}×`,
            ]
          : [];
      }),
    '',
    ...(long
      ? [
          `Decode at ${meta.context} context, hybrid against teacher (the paper's point: less KV cache to read):`,
          '',
          ...(pairs.length
            ? pairs.map(
                (p) =>
                  `- ${p.runner}, ${p.threads} thr.: teacher ${p.teacher.toFixed(1)} ms/token, hybrid ${p.hybrid.toFixed(1)} ms/token — hybrid / teacher ${(p.hybrid / p.teacher).toFixed(2)}${p.hybrid < p.teacher ? '' : ' (NOT below)'}`,
              )
            : ['- no runner ran both models']),
          '',
        ]
      : []),
  ].join('\n');
}

const rendering = opt('--render');
const rep = rendering ? (JSON.parse(readFileSync(rendering, 'utf8')) as Report) : measure();
if (!rendering) writeFile(join(OUT, 'realsize.json'), JSON.stringify(rep, null, 1) + '\n');
const md = render(rep);
writeFile(join(OUT, 'realsize.md'), md);
console.log(md);
console.log(`wrote ${OUT}/realsize.md${rendering ? ` (from ${rendering})` : ' and realsize.json'}`);
process.exit(0);
