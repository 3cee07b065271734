/**
 * The browser page (web/index.html): the project's own code, bundled for the browser by web/build.ts, running
 * the shipped models on the backend chosen in the page (`?backend=NAME` preselects one): the float64
 * reference ops, or GPU.js's kernels (kernels/) on webgpu or webgl2 where the browser has them, on
 * WebAssembly or plain JavaScript otherwise — each listed with why it is unavailable where it is. Three parts: greedy generation
 * with the teacher and the distilled hybrid side by side; speculative decoding stepped one round at a time
 * (the round's drafts, the target's verdict, i, j, k, the state kept and the conv write position); and
 * Algorithm 1's weight mapping checked live. Speculative decoding is also measured against plain decoding in the
 * tab (the speedup, and whether the output is identical). On wasm-simd the SIMD module is fetched (gemm.wasm,
 * gemm-fma.wasm beside the page) and runs on the page's thread; the page must be cross-origin isolated. Each output element carries its token ids in `data-tokens`
 * (spec/web.spec.ts compares them with the CLI's).
 */
import { BACKENDS, backendStatus, getOps, type BackendName, type Ops } from '../lib/ops.js';
import { KERNEL_BACKENDS, getRuntime, type KernelBackendName } from '../kernels/runtime.js';
import { modelFromParts } from '../lib/model/load.js';
import { weightsFromBytes } from '../lib/model/weights.js';
import { generate } from '../lib/model/generate.js';
import { convert } from '../lib/model/convert.js';
import type { HybridModel, Mamba1Cache, Mamba2Cache } from '../lib/model/hybrid.js';
import { ModelDrafter, speculativeGenerate, type Drafter } from '../lib/decode/speculative.js';
import { specOf } from '../lib/decode/lazy_state.js';
import { BpeTokenizer } from '../lib/text/bpe.js';
import { compareWithPlain } from '../lib/decode/compare.js';
import { SimdGemm } from '../lib/simd/gemm.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = (s: string) => ($('status').textContent = s);

async function fetchJson(url: string): Promise<Record<string, unknown> | undefined> {
  const r = await fetch(url);
  return r.ok ? ((await r.json()) as Record<string, unknown>) : undefined;
}

/** A shipped model folder, fetched (the files the manifest web/build.ts writes lists) and checked as `loadModel` checks one on disk. */
async function fetchModel(name: string, files: string[]): Promise<HybridModel> {
  const dir = `models/${name}`;
  const json = async (f: string) => (files.includes(f) ? fetchJson(`${dir}/${f}`) : undefined);
  const config = await json('config.json');
  if (!config) throw new Error(`${dir}/config.json could not be fetched`);
  const bytes = new Uint8Array(await (await fetch(`${dir}/model.safetensors`)).arrayBuffer());
  return modelFromParts({
    dir,
    config,
    mambaConfig: await json('mamba_config.json'),
    milConfig: await json('mil_config.json'),
    weights: weightsFromBytes(bytes, `${dir}/model.safetensors`),
  });
}

// ---- the wasm-simd backend's module, fetched (the page has no files): the FMA build where this browser runs
// relaxed SIMD, as Node's `SimdGemm.shared()` chooses, on this thread alone (the Node backend's worker threads
// block in Atomics.wait, which a page's main thread may not). Its memory is shared (a SharedArrayBuffer), which
// a page has only when cross-origin isolated: web/serve.ts and the static build's _headers ask for that.
if (self.crossOriginIsolated) {
  const [base, fma] = await Promise.all(
    ['gemm.wasm', 'gemm-fma.wasm'].map(async (f) => new Uint8Array(await (await fetch(f)).arrayBuffer())),
  );
  const relaxed = WebAssembly.validate(fma);
  SimdGemm.provideShared(relaxed ? fma : base, relaxed);
}
document.body.dataset.crossOriginIsolated = String(self.crossOriginIsolated);

// ---- the backend: every one this library has, those that cannot run in this browser disabled with the reason
const picker = $<HTMLSelectElement>('backend');
const statuses = await backendStatus();
picker.innerHTML = statuses
  .map(
    ({ name, available, reason }) =>
      `<option value="${name}"${available ? '' : ' disabled'} title="${available ? '' : (reason ?? '').replace(/"/g, "'")}">${name}${available ? '' : ' (unavailable)'}</option>`,
  )
  .join('');
$('backend-why').innerHTML = statuses
  .filter((b) => !b.available)
  .map((b) => `<b>${b.name}</b>: ${b.reason}`)
  .join('; ');
const wanted = new URLSearchParams(location.search).get('backend') ?? 'reference';
if (!BACKENDS.includes(wanted as BackendName))
  throw new Error(`?backend= must be one of ${BACKENDS.join(', ')}, got '${wanted}'`);
const why = statuses.find((b) => b.name === wanted)!.reason;
if (why) throw new Error(`?backend=${wanted} cannot run in this browser: ${why}`);
picker.value = wanted;
let ops: Ops = await getOps(wanted);
document.body.dataset.backend = ops.name;
picker.onchange = async () => {
  ops = await getOps(picker.value);
  document.body.dataset.backend = ops.name;
};

/** Which GPU.js kernel class the kernels ran as (the runtime refuses any other than the backend's own). */
async function ranAs(): Promise<string> {
  if (!(KERNEL_BACKENDS as readonly string[]).includes(ops.name)) return '';
  const classes = [...(await getRuntime(ops.name as KernelBackendName)).ranOn];
  document.body.dataset.kernelClass = classes.join(',');
  return ` (GPU.js ${classes.join(', ')})`;
}

const t0 = performance.now();
const tok = BpeTokenizer.fromObject((await fetchJson('models/tokenizer.json'))!, 'models/tokenizer.json');
const manifest = (await fetchJson('models/manifest.json')) as Record<string, string[]>;
const load = (n: string) => fetchModel(n, manifest[n] ?? []);
const [teacher, hybrid, draft] = await Promise.all([
  load('teacher-small'),
  load('hybrid-mamba2-50'),
  load('draft-small'),
]);
status(`Models loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
document.body.dataset.ready = '1';

const escape = (s: string) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);
const show = (el: HTMLElement, ids: number[]) => {
  el.textContent = tok.decode(ids);
  el.dataset.tokens = ids.join(',');
};

// ---- 1. generation side by side
$<HTMLButtonElement>('generate').disabled = false;
$('generate').onclick = async () => {
  const prompt = tok.encode($<HTMLTextAreaElement>('prompt').value);
  const n = Number($<HTMLInputElement>('n').value);
  for (const [m, id] of [
    [teacher, 'out-teacher'],
    [hybrid, 'out-hybrid'],
  ] as const) {
    $(id).textContent = '…';
    await new Promise((r) => setTimeout(r, 0)); // let the page paint before the work
    const t = performance.now();
    const r = await generate(ops, m, prompt, { maxNewTokens: n }); // stops at the model's EOS, as the CLI does
    show($(id), r.tokens);
    $(`${id}-time`).textContent =
      `${r.tokens.length} tokens in ${((performance.now() - t) / 1000).toFixed(2)} s on ${ops.name}${await ranAs()}`;
  }
  document.body.dataset.generated = String(Number(document.body.dataset.generated ?? 0) + 1);
};

// ---- 2. speculative decoding, stepped
/** The draft, remembering what it proposed last (RoundInfo says how many were accepted, not which were drafted). */
class RecordingDrafter implements Drafter {
  last: number[] = [];
  constructor(private readonly inner: Drafter) {}
  async propose(...a: Parameters<Drafter['propose']>) {
    const r = await this.inner.propose(...a);
    this.last = r.tokens;
    return r;
  }
  accept(n: number): void {
    this.inner.accept(n);
  }
}

let next: (() => void) | null = null;
$<HTMLButtonElement>('spec-start').disabled = false;
$('spec-step').onclick = () => next?.();
$('spec-start').onclick = async () => {
  const K = Number($<HTMLInputElement>('K').value);
  const prompt = tok.encode($<HTMLTextAreaElement>('prompt').value);
  const body = $('rounds').querySelector('tbody')!;
  body.innerHTML = '';
  $<HTMLButtonElement>('spec-start').disabled = true;
  const drafter = new RecordingDrafter(new ModelDrafter(ops, draft, K + 1, 'lazy'));
  const emitted: number[] = [];
  let committed = prompt.length;
  let i = prompt.length - 1; // after prefill, the Mamba state stands at the position before the last prompt token
  const res = await speculativeGenerate(ops, hybrid, drafter, prompt, {
    K,
    maxNewTokens: Number($<HTMLInputElement>('n').value),
    onRound: async (info, cache) => {
      const j = committed - 1;
      const st = specOf(cache.layers.find((l): l is Mamba1Cache | Mamba2Cache => l.kind !== 'attention')!);
      // accepted, then the first rejected one, then those after it (discarded unchecked)
      const cls = (m: number) => (m < info.accepted ? 'ok' : m === info.accepted ? 'no' : 'skip');
      const drafts = drafter.last.map((t, m) => `<span class="${cls(m)}">${escape(tok.decode([t]))}</span>`).join(' ');
      const own = info.emitted.slice(info.accepted);
      const kept =
        st.pending.x.length === 0
          ? 'h<sub>k</sub> (all accepted)'
          : `h<sub>j</sub> + ${st.pending.x.length} pending rows`;
      const row = document.createElement('tr');
      row.dataset.accepted = String(info.accepted);
      row.dataset.kept = st.pending.x.length === 0 ? 'h_k' : 'h_j';
      row.innerHTML = `<td>${body.children.length + 1}</td><td>${i}</td><td>${j}</td><td>j + ${info.proposed}</td><td>${drafts || '—'}</td><td class="tgt">${escape(tok.decode(own))}</td><td>${kept}</td><td>${st.statePos}</td><td>${st.convLen}</td>`;
      body.appendChild(row);
      emitted.push(...info.emitted);
      $('spec-text').innerHTML = `${escape(tok.decode(prompt))}<b>${escape(tok.decode(emitted))}</b>`;
      committed += info.emitted.length;
      i = st.statePos;
      document.body.dataset.rounds = String(body.children.length);
      $<HTMLButtonElement>('spec-step').disabled = false;
      await new Promise<void>((resolve) => (next = resolve)); // wait for "Next round"
      $<HTMLButtonElement>('spec-step').disabled = true;
    },
  });
  $('spec-text').dataset.tokens = res.tokens.join(',');
  $('spec-text').innerHTML +=
    ` <span class="note">(done: ${res.rounds.length} target forwards for ${res.tokens.length} tokens, acceptance ${(100 * res.acceptanceRate).toFixed(0)}%)</span>`;
  document.body.dataset.specDone = '1';
  $<HTMLButtonElement>('spec-start').disabled = false;
};

// ---- 2b. speculative against plain decoding, measured in this tab (lib/decode/compare.ts, as `mil demo` does)
$<HTMLButtonElement>('spec-measure').disabled = false;
$('spec-measure').onclick = async () => {
  const K = Number($<HTMLInputElement>('K').value);
  const prompt = tok.encode($<HTMLTextAreaElement>('prompt').value);
  const el = $('spec-speed');
  el.textContent = '…';
  $<HTMLButtonElement>('spec-measure').disabled = true;
  await new Promise((r) => setTimeout(r, 0));
  const c = await compareWithPlain(ops, hybrid, () => new ModelDrafter(ops, draft, K + 1, 'lazy'), [prompt], {
    K,
    maxNewTokens: Number($<HTMLInputElement>('n').value),
    repeats: 3,
  });
  el.dataset.speedup = String(c.speedup);
  el.dataset.identical = String(c.identical);
  el.textContent =
    `on ${ops.name}, K = ${K}: speculative ${c.specDecodeMs.toFixed(0)} ms vs plain ${c.plainDecodeMs.toFixed(0)} ms for ` +
    `${c.newTokens} tokens (after the prompt; best of 3) — ×${c.speedup.toFixed(2)}; ${c.tokensPerVerify.toFixed(2)} tokens ` +
    `per verify, acceptance ${(100 * c.acceptance).toFixed(0)}%; output ${c.identical ? 'identical to' : 'DIFFERENT from'} plain greedy decoding`;
  $<HTMLButtonElement>('spec-measure').disabled = false;
  document.body.dataset.measured = String(Number(document.body.dataset.measured ?? 0) + 1);
};

// ---- 3. Algorithm 1, checked live
{
  const h = convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 0 });
  const { dInner, dXb } = h.mamba!;
  const W = h.weights.get('model.layers.0.mamba.in_proj.weight');
  const rowsOf = (from: number, n: number) => W.data.subarray(from * W.shape[1], (from + n) * W.shape[1]);
  const diff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
    Math.max(0, ...Array.from(a, (v, k) => Math.abs(v - b[k])));
  const attn = (n: string) => teacher.weights.get(`model.layers.0.self_attn.${n}.weight`);
  const rows: Array<[string, string, ArrayLike<number>]> = [
    [`x: in_proj rows ${dInner}…${dInner + dXb - 1}`, 'v_proj (W^V)', rowsOf(dInner, dXb)],
    [`B: in_proj rows ${dInner + dXb}…${dInner + 2 * dXb - 1}`, 'k_proj (W^K)', rowsOf(dInner + dXb, dXb)],
    [
      `C: in_proj rows ${dInner + 2 * dXb}…${2 * dInner + 2 * dXb - 1}`,
      'q_proj (W^Q)',
      rowsOf(dInner + 2 * dXb, dInner),
    ],
    ['out_proj', 'o_proj (W^O)', h.weights.get('model.layers.0.mamba.out_proj.weight').data],
  ];
  $('alg1').querySelector('tbody')!.innerHTML = rows
    .map(([a, b, v]) => {
      const src = attn(b.split(' ')[0]);
      return `<tr><td>${a}</td><td>${b}</td><td>[${src.shape.join(' × ')}]</td><td data-diff="${diff(v, src.data)}">${diff(v, src.data)}</td></tr>`;
    })
    .join('');
}
