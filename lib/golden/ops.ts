/**
 * The golden-vector ops of FORMAT.md (`mil-golden/1`): for each op, how a case's named tensors map onto
 * this library's ops (`run`), and how to make a fresh random case of chosen shapes (`generate`, for
 * `mil golden emit`). Layouts and names are exactly the upstream ones listed in FORMAT.md.
 */
import { GoldenFormatError } from '../errors.js';
import type { Ops } from '../ops.js';
import { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';
import { parseLlamaConfig, parseMambaConfig, type MambaVariant } from '../model/config.js';
import { convert } from '../model/convert.js';
import type { HybridModel } from '../model/hybrid.js';
import { randomLlama } from '../model/random.js';
import { WeightStore } from '../model/weights.js';
import { ModelDrafter, effectiveStates, speculativeGenerate, truncateLayers } from '../decode/speculative.js';

export type Attrs = Record<string, unknown>;
export type Named = Record<string, Tensor>;

export interface ShapeOptions {
  /** speculative: 'mamba1' | 'mamba2' target, its vocabulary, K */
  variant?: string;
  vocab?: number;
  k?: number;
  batch?: number;
  dim?: number;
  len?: number;
  state?: number;
  groups?: number;
  heads?: number;
  headdim?: number;
  width?: number;
  chunk?: number;
  steps?: number;
  recompute?: number;
}

export interface GoldenOp {
  op: string;
  upstream: string;
  layout: string;
  run(ops: Ops, I: Named, attrs: Attrs): Promise<Named>;
  generate(rng: Rng, s: ShapeOptions): { inputs: Named; attrs: Attrs; note?: string };
}

function need(I: Named, name: string): Tensor {
  const t = I[name];
  if (!t) throw new GoldenFormatError('case inputs', `missing required input '${name}'`);
  return t;
}
function bool(a: Attrs, k: string, dflt = false): boolean {
  const v = a[k] ?? dflt;
  if (typeof v !== 'boolean') throw new GoldenFormatError('case attrs', `'${k}' must be true or false, got ${JSON.stringify(v)}`);
  return v;
}
function int(a: Attrs, k: string): number {
  const v = a[k];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new GoldenFormatError('case attrs', `'${k}' must be an integer, got ${JSON.stringify(v)}`);
  return v;
}
function activation(a: Attrs): 'silu' | null {
  const v = a.activation ?? null;
  if (v === 'silu' || v === 'swish') return 'silu';
  if (v === null) return null;
  throw new GoldenFormatError('case attrs', `'activation' must be null or 'silu', got ${JSON.stringify(v)}`);
}
/** The named tensors that exist (optional gradients are absent when their input is). */
function pick(o: Record<string, Tensor | undefined>): Named {
  return Object.fromEntries(Object.entries(o).filter((e): e is [string, Tensor] => e[1] !== undefined));
}
function ints(t: Tensor | undefined): number[] | undefined {
  if (!t) return undefined;
  const v = Array.from(t.data);
  if (!v.every((x) => Number.isInteger(x) && x >= 0)) throw new GoldenFormatError(t.name, 'must hold non-negative integers');
  return v;
}

const N = (r: Rng, shape: number[], std = 1) => Tensor.normal(r, shape, 0, std);
const U = (r: Rng, shape: number[], lo: number, hi: number) => Tensor.uniform(r, shape, lo, hi);
const d = (v: number | undefined, dflt: number) => v ?? dflt;

const SCAN_LAYOUT = 'u,delta,z,out: (batch,dim,L); A: (dim,N); B,C: (batch,N,L) | (batch,G,N,L) | (dim,N); last_state: (batch,dim,N)';
const MULTISTEP_LAYOUT =
  'h_i: (batch,dim,N) cached state; x_cache,dt_cache: (batch,K+1,dim), B_cache: (batch,K+1,N), first recompute_steps rows replayed from h_i; x,dt,z: (batch,steps,dim); B,C: (batch,steps,N); out: (batch,steps,dim); h_j: state after the replayed steps; h_k: state after all steps';

const SPEC_LAYOUT =
  'inputs: prompt (1,P) token ids; uniforms (U) the uniform draws in [0,1), consumed in order (one per draft sample, one per accept test, one per residual or bonus draw); target/<weight> and draft/<weight> the two models (configs in attrs). outputs: tokens (n); accepted (rounds) accepted drafts per round; emitted (rounds); uniforms_used (1); round<r>/layer<i>/ssm (1,dim,N) the target Mamba layer state after round r as plain decoding holds it (pending rows folded); round<r>/layer<i>/conv (1,C,W-1) its conv window';

function modelToInputs(prefix: string, m: HybridModel, I: Named): Record<string, unknown> {
  for (const n of m.weights.names()) I[`${prefix}/${n}`] = m.weights.get(n);
  return { config: m.llama.raw, mamba_config: m.mamba?.raw ?? null, variant: m.mamba?.variant ?? null, semantics: m.mamba?.semantics ?? null };
}

function modelFromInputs(prefix: string, I: Named, a: Record<string, unknown>): HybridModel {
  if (!a || typeof a !== 'object' || typeof a.config !== 'object') throw new GoldenFormatError('case attrs', `'${prefix}' must hold the model's config`);
  const llama = parseLlamaConfig(a.config as Record<string, unknown>, `${prefix} config`);
  const mamba = a.mamba_config ? parseMambaConfig(a.mamba_config as Record<string, unknown>, a.variant as MambaVariant, `${prefix} mamba_config`, (a.semantics as 'upstream' | 'clean') ?? 'upstream') : undefined;
  const w = new Map<string, Tensor>();
  for (const [k, t] of Object.entries(I)) if (k.startsWith(`${prefix}/`)) w.set(k.slice(prefix.length + 1), t);
  return { llama, mamba, weights: new WeightStore(w, `${prefix} weights`) };
}

export const GOLDEN_OPS: Record<string, GoldenOp> = {
  speculative: {
    op: 'speculative',
    upstream: 'itsdaniele/speculative_mamba (speculative sampling, multi-step verify); this project: lib/decode/speculative.ts',
    layout: SPEC_LAYOUT,
    async run(ops, I, a) {
      const target = modelFromInputs('target', I, a.target as Record<string, unknown>);
      const draft = modelFromInputs('draft', I, a.draft as Record<string, unknown>);
      const prompt = Array.from(need(I, 'prompt').data);
      const U = need(I, 'uniforms').data;
      let used = 0;
      const uniform = () => {
        if (used >= U.length) throw new GoldenFormatError('uniforms', `more than the ${U.length} recorded draws were needed`);
        return U[used++]!;
      };
      const K = int(a, 'K');
      const out: Named = {};
      const accepted: number[] = [];
      const emitted: number[] = [];
      const num = (k: string) => (typeof a[k] === 'number' ? (a[k] as number) : undefined);
      const r = await speculativeGenerate(ops, target, new ModelDrafter(ops, draft, K + 1, 'lazy'), prompt, {
        K,
        maxNewTokens: int(a, 'max_new_tokens'),
        temperature: num('temperature'),
        topK: num('top_k'),
        topP: num('top_p'),
        eos: [],
        uniform,
        onRound: (info, cache) => {
          const round = accepted.length;
          accepted.push(info.accepted);
          emitted.push(info.emitted.length);
          for (const [layer, st] of effectiveStates(target, cache)) {
            out[`round${round}/layer${layer}/ssm`] = st.ssm;
            out[`round${round}/layer${layer}/conv`] = st.conv;
          }
        },
      });
      out.tokens = Tensor.from(r.tokens, [r.tokens.length]);
      out.accepted = Tensor.from(accepted, [accepted.length]);
      out.emitted = Tensor.from(emitted, [emitted.length]);
      out.uniforms_used = Tensor.from([used], [1]);
      return out;
    },
    generate(r, s) {
      const variant = (s.variant ?? 'mamba2') as MambaVariant;
      if (variant !== 'mamba1' && variant !== 'mamba2') throw new GoldenFormatError('--variant', `mamba1 or mamba2, got ${s.variant}`);
      const heads = d(s.heads, 2);
      const hd = 16;
      const teacher = randomLlama({ vocab: d(s.vocab, 11), hidden: 32, intermediate: 40, layers: 4, heads, kvHeads: 1, headDim: hd }, r.int(0, 1 << 30));
      const target = convert(teacher, { variant, attentionFraction: 0.5, seed: r.int(0, 1 << 30) });
      const draft = truncateLayers(target, 2);
      const inputs: Named = {};
      const attrs: Attrs = {
        K: d(s.k, 3),
        max_new_tokens: d(s.steps, 10),
        temperature: 1,
        target: modelToInputs('target', target, inputs),
        draft: modelToInputs('draft', draft, inputs),
        layout: SPEC_LAYOUT,
      };
      const P = d(s.len, 4);
      inputs.prompt = Tensor.from(Array.from({ length: P }, () => r.int(0, teacher.llama.vocabSize - 1)), [1, P]);
      inputs.uniforms = Tensor.from(Array.from({ length: 2048 }, () => r.next()), [2048]);
      return { inputs, attrs, note: 'speculative sampling (temperature 1), draft = the target’s first 2 layers; states are the target’s after each round, pending rows folded' };
    },
  },
  selective_scan: {
    op: 'selective_scan',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/selective_scan_interface.py::selective_scan_ref',
    layout: SCAN_LAYOUT,
    async run(ops, I, a) {
      const r = await ops.selectiveScan({
        u: need(I, 'u'),
        delta: need(I, 'delta'),
        A: need(I, 'A'),
        B: need(I, 'B'),
        C: need(I, 'C'),
        D: I.D,
        z: I.z,
        deltaBias: I.delta_bias,
        deltaSoftplus: bool(a, 'delta_softplus'),
        initialState: I.initial_state,
      });
      return { out: r.out, last_state: r.lastState };
    },
    generate(r, s) {
      const b = d(s.batch, 2), dim = d(s.dim, 8), L = d(s.len, 13), n = d(s.state, 4), G = s.groups;
      const bc = () => (G ? N(r, [b, G, n, L]) : N(r, [b, n, L]));
      return {
        inputs: {
          u: N(r, [b, dim, L]),
          delta: N(r, [b, dim, L], 0.5),
          A: U(r, [dim, n], -2, -0.1),
          B: bc(),
          C: bc(),
          D: N(r, [dim]),
          z: N(r, [b, dim, L]),
          delta_bias: U(r, [dim], -3, -1),
        },
        attrs: { delta_softplus: true, layout: SCAN_LAYOUT },
      };
    },
  },
  selective_state_update: {
    op: 'selective_state_update',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/triton/selective_state_update.py::selective_state_update_ref',
    layout: 'state: (batch,dim,N) | (batch,heads,headdim,N); x,dt,z: (batch,dim) | (batch,heads,headdim); A: (dim,N) | (heads,headdim,N); B,C: (batch,N) | (batch,groups,N)',
    async run(ops, I, a) {
      const r = await ops.selectiveStateUpdate({
        state: need(I, 'state'),
        x: need(I, 'x'),
        dt: need(I, 'dt'),
        A: need(I, 'A'),
        B: need(I, 'B'),
        C: need(I, 'C'),
        D: I.D,
        z: I.z,
        dtBias: I.dt_bias,
        dtSoftplus: bool(a, 'dt_softplus'),
      });
      return { out: r.out, state_after: r.state };
    },
    generate(r, s) {
      const b = d(s.batch, 2), n = d(s.state, 4);
      if (s.heads) {
        const H = s.heads, P = d(s.headdim, 3), G = d(s.groups, 1);
        return {
          inputs: {
            state: N(r, [b, H, P, n]), x: N(r, [b, H, P]), dt: N(r, [b, H, P], 0.5), A: U(r, [H, P, n], -2, -0.1),
            B: N(r, [b, G, n]), C: N(r, [b, G, n]), D: N(r, [H, P]), z: N(r, [b, H, P]), dt_bias: U(r, [H, P], -3, -1),
          },
          attrs: { dt_softplus: true, layout: 'state: (batch,heads,headdim,N); x,dt,z: (batch,heads,headdim); A: (heads,headdim,N); B,C: (batch,groups,N); D,dt_bias: (heads,headdim)' },
        };
      }
      const dim = d(s.dim, 8);
      return {
        inputs: {
          state: N(r, [b, dim, n]), x: N(r, [b, dim]), dt: N(r, [b, dim], 0.5), A: U(r, [dim, n], -2, -0.1),
          B: N(r, [b, n]), C: N(r, [b, n]), D: N(r, [dim]), z: N(r, [b, dim]), dt_bias: U(r, [dim], -3, -1),
        },
        attrs: { dt_softplus: true, layout: 'state: (batch,dim,N); x,dt,z: (batch,dim); A: (dim,N); B,C: (batch,N)' },
      };
    },
  },
  causal_conv1d: {
    op: 'causal_conv1d',
    upstream: 'Dao-AILab/causal-conv1d:causal_conv1d/causal_conv1d_interface.py::causal_conv1d_ref',
    layout: 'x,out: (batch,dim,L); weight: (dim,width); initial_states,final_states: (batch,dim,width-1)',
    async run(ops, I, a) {
      const r = await ops.causalConv1d({ x: need(I, 'x'), weight: need(I, 'weight'), bias: I.bias, initialStates: I.initial_states, activation: activation(a) });
      return { out: r.out, final_states: r.finalStates };
    },
    generate(r, s) {
      const b = d(s.batch, 2), dim = d(s.dim, 6), L = d(s.len, 11), W = d(s.width, 4);
      return {
        inputs: { x: N(r, [b, dim, L]), weight: N(r, [dim, W], 0.5), bias: N(r, [dim]), initial_states: N(r, [b, dim, W - 1]) },
        attrs: { activation: 'silu', layout: 'x,out: (batch,dim,L); weight: (dim,width); initial_states,final_states: (batch,dim,width-1)' },
      };
    },
  },
  causal_conv1d_update: {
    op: 'causal_conv1d_update',
    upstream: 'Dao-AILab/causal-conv1d:causal_conv1d/causal_conv1d_interface.py::causal_conv1d_update_ref',
    layout: 'x,out: (batch,dim,steps); conv_state: (batch,dim,state_len), shifted left or a circular buffer written at cache_seqlens % state_len',
    async run(ops, I, a) {
      const r = await ops.causalConv1dUpdate({
        x: need(I, 'x'),
        convState: need(I, 'conv_state'),
        weight: need(I, 'weight'),
        bias: I.bias,
        activation: activation(a),
        cacheSeqlens: ints(I.cache_seqlens),
      });
      return { out: r.out, conv_state_after: r.convState };
    },
    generate(r, s) {
      const b = d(s.batch, 2), dim = d(s.dim, 6), steps = d(s.steps, 3), W = d(s.width, 4), S = Math.max(W - 1, d(s.len, 7));
      return {
        inputs: {
          x: N(r, [b, dim, steps]), conv_state: N(r, [b, dim, S]), weight: N(r, [dim, W], 0.5), bias: N(r, [dim]),
          cache_seqlens: Tensor.from(Array.from({ length: b }, () => r.int(0, 3 * S)), [b]),
        },
        attrs: { activation: 'silu', layout: 'x,out: (batch,dim,steps); conv_state: (batch,dim,state_len) circular buffer written at cache_seqlens % state_len' },
        note: 'cache_seqlens is stored as float64 here; it is an integer vector',
      };
    },
  },
  ssd_chunk_scan: {
    op: 'ssd_chunk_scan',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/triton/ssd_combined.py::ssd_chunk_scan_combined_ref',
    layout: 'x,z,out: (batch,L,heads,headdim); dt: (batch,L,heads); A,D,dt_bias: (heads); B,C: (batch,L,groups,N)',
    async run(ops, I, a) {
      const r = await ops.ssdChunkScan(
        { x: need(I, 'x'), dt: need(I, 'dt'), A: need(I, 'A'), B: need(I, 'B'), C: need(I, 'C'), D: I.D, z: I.z, dtBias: I.dt_bias, dtSoftplus: bool(a, 'dt_softplus'), initialState: I.initial_states },
        int(a, 'chunk_size'),
      );
      return { out: r.out, final_state: r.finalState };
    },
    generate(r, s) {
      const b = d(s.batch, 2), L = d(s.len, 13), H = d(s.heads, 4), P = d(s.headdim, 3), G = d(s.groups, 2), n = d(s.state, 5);
      return {
        inputs: {
          x: N(r, [b, L, H, P]), dt: N(r, [b, L, H], 0.5), A: U(r, [H], -2, -0.1), B: N(r, [b, L, G, n]), C: N(r, [b, L, G, n]),
          D: N(r, [H]), z: N(r, [b, L, H, P]), dt_bias: U(r, [H], -3, -1),
        },
        attrs: { chunk_size: d(s.chunk, 4), dt_softplus: true, layout: 'x,z,out: (batch,L,heads,headdim); dt: (batch,L,heads); A,D,dt_bias: (heads); B,C: (batch,L,groups,N)' },
      };
    },
  },
  ssd_minimal_discrete: {
    op: 'ssd_minimal_discrete',
    upstream: 'state-spaces/mamba:mamba_ssm/modules/ssd_minimal.py::ssd_minimal_discrete',
    layout: 'X,Y: (batch,L,heads,headdim); A: (batch,L,heads) already multiplied by dt; B,C: (batch,L,heads,N); initial_states: (batch,1,heads,headdim,N); final_state: (batch,heads,headdim,N)',
    async run(ops, I, a) {
      const r = await ops.ssdMinimalDiscrete(need(I, 'X'), need(I, 'A'), need(I, 'B'), need(I, 'C'), int(a, 'block_len'), I.initial_states);
      return { Y: r.Y, final_state: r.finalState };
    },
    generate(r, s) {
      const b = d(s.batch, 2), L = d(s.len, 12), H = d(s.heads, 3), P = d(s.headdim, 4), n = d(s.state, 5);
      return {
        inputs: { X: N(r, [b, L, H, P]), A: U(r, [b, L, H], -1, -0.01), B: N(r, [b, L, H, n]), C: N(r, [b, L, H, n]), initial_states: N(r, [b, 1, H, P, n]) },
        attrs: { block_len: d(s.chunk, 4), layout: this.layout },
      };
    },
  },
  gated_rmsnorm: {
    op: 'gated_rmsnorm',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/triton/layernorm_gated.py::rms_norm_ref',
    layout: 'x,z,out: (..., d); weight: (d)',
    async run(ops, I, a) {
      const eps = a.eps ?? 1e-6;
      if (typeof eps !== 'number') throw new GoldenFormatError('case attrs', `'eps' must be a number`);
      const gs = a.group_size ?? undefined;
      const out = await ops.gatedRmsnorm(need(I, 'x'), need(I, 'weight'), I.z, {
        eps,
        groupSize: gs === undefined || gs === null ? undefined : int(a, 'group_size'),
        normBeforeGate: bool(a, 'norm_before_gate', true),
      });
      return { out };
    },
    generate(r, s) {
      const rows = d(s.batch, 3), dd = d(s.dim, 12);
      return {
        inputs: { x: N(r, [rows, d(s.len, 5), dd]), weight: N(r, [dd]), z: N(r, [rows, d(s.len, 5), dd]) },
        attrs: { eps: 1e-5, group_size: d(s.groups, 4), norm_before_gate: false, layout: 'x,z,out: (..., d); weight: (d)' },
      };
    },
  },
  multistep: {
    op: 'multistep',
    upstream: 'itsdaniele/speculative_mamba:specmamba/ops/triton/selective_state_update_multi_cached_fused.py::selective_state_update_multi_cached_ref',
    layout: MULTISTEP_LAYOUT,
    async run(ops, I, a) {
      const r = await ops.multistep({
        hI: need(I, 'h_i'),
        xCache: need(I, 'x_cache'),
        dtCache: need(I, 'dt_cache'),
        BCache: need(I, 'B_cache'),
        recomputeSteps: int(a, 'recompute_steps'),
        x: need(I, 'x'),
        dt: need(I, 'dt'),
        B: need(I, 'B'),
        C: need(I, 'C'),
        z: I.z,
        A: need(I, 'A'),
        D: I.D,
        dtBias: I.dt_bias,
        dtSoftplus: bool(a, 'dt_softplus'),
      });
      if ('new_steps' in a && int(a, 'new_steps') !== r.out.shape[1]) throw new GoldenFormatError('case attrs', `new_steps ${a.new_steps} disagrees with x (${r.out.shape[1]} steps)`);
      return { out: r.out, h_j: r.hJ, h_k: r.hK };
    },
    generate(r, s) {
      const b = d(s.batch, 1), dim = d(s.dim, 8), n = d(s.state, 4), steps = d(s.steps, 4), rec = d(s.recompute, 2), K1 = Math.max(rec, steps) + 1;
      return {
        inputs: {
          h_i: N(r, [b, dim, n]), x_cache: N(r, [b, K1, dim]), dt_cache: N(r, [b, K1, dim], 0.5), B_cache: N(r, [b, K1, n]),
          x: N(r, [b, steps, dim]), dt: N(r, [b, steps, dim], 0.5), B: N(r, [b, steps, n]), C: N(r, [b, steps, n]), z: N(r, [b, steps, dim]),
          A: U(r, [dim, n], -2, -0.1), D: N(r, [dim]), dt_bias: U(r, [dim], -3, -1),
        },
        attrs: { recompute_steps: rec, new_steps: steps, dt_softplus: true, layout: MULTISTEP_LAYOUT },
        note: 'raw dt (before bias and softplus) is what the cache holds; replayed steps produce no output',
      };
    },
  },
  // ---- backward ops (FORMAT.md "Training cases"): inputs are the forward inputs plus d<output>; outputs
  // the forward outputs and d<input> for every input given, on every backend (lib/ops_grad.ts for the kernels).
  selective_scan_grad: {
    op: 'selective_scan_grad',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/selective_scan_interface.py::selective_scan_ref, backward by torch.autograd',
    layout: `${SCAN_LAYOUT}; dout, dlast_state given; d<input> in the input's shape`,
    async run(ops, I, a) {
      const inp = { u: need(I, 'u'), delta: need(I, 'delta'), A: need(I, 'A'), B: need(I, 'B'), C: need(I, 'C'), D: I.D, z: I.z, deltaBias: I.delta_bias, deltaSoftplus: bool(a, 'delta_softplus'), initialState: I.initial_state };
      const r = await ops.selectiveScanBackward(inp, need(I, 'dout'), I.dlast_state);
      return pick({ out: r.out, last_state: r.lastState, du: r.du, ddelta: r.ddelta, dA: r.dA, dB: r.dB, dC: r.dC, dD: r.dD, dz: r.dz, ddelta_bias: r.ddeltaBias, dinitial_state: r.dInitialState });
    },
    generate(r, s) {
      const f = GOLDEN_OPS.selective_scan!.generate(r, s);
      const [b, dim, L] = f.inputs.u!.shape as [number, number, number];
      const n = f.inputs.A!.shape[1]!;
      return { inputs: { ...f.inputs, dout: N(r, [b, dim, L]), dlast_state: N(r, [b, dim, n]) }, attrs: { ...f.attrs, layout: this.layout } };
    },
  },
  causal_conv1d_grad: {
    op: 'causal_conv1d_grad',
    upstream: 'Dao-AILab/causal-conv1d:causal_conv1d/causal_conv1d_interface.py::causal_conv1d_ref, backward by torch.autograd',
    layout: 'as causal_conv1d; dout (and dfinal_states) given; outputs dx, dweight, dbias, dinitial_states',
    async run(ops, I, a) {
      const r = await ops.causalConv1dBackward({ x: need(I, 'x'), weight: need(I, 'weight'), bias: I.bias, initialStates: I.initial_states, activation: activation(a) }, need(I, 'dout'), I.dfinal_states);
      return pick({ out: r.out, final_states: I.initial_states ? r.finalStates : undefined, dx: r.dx, dweight: r.dweight, dbias: r.dbias, dinitial_states: r.dinitialStates });
    },
    generate(r, s) {
      const f = GOLDEN_OPS.causal_conv1d!.generate(r, s);
      const x = f.inputs.x!;
      const W = f.inputs.weight!.shape[1]!;
      const extra: Named = { dout: N(r, x.shape as number[]) };
      if (f.inputs.initial_states) extra.dfinal_states = N(r, [x.shape[0]!, x.shape[1]!, W - 1]);
      return { inputs: { ...f.inputs, ...extra }, attrs: { ...f.attrs, layout: this.layout } };
    },
  },
  ssd_chunk_scan_grad: {
    op: 'ssd_chunk_scan_grad',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/triton/ssd_combined.py::ssd_chunk_scan_combined_ref, backward by torch.autograd',
    layout: 'as ssd_chunk_scan; dout given; d<input> in the input\'s shape (computed by the recurrence run backwards)',
    async run(ops, I, a) {
      int(a, 'chunk_size'); // the chunking does not change the function: read for validation only
      const r = await ops.ssdBackward({ x: need(I, 'x'), dt: need(I, 'dt'), A: need(I, 'A'), B: need(I, 'B'), C: need(I, 'C'), D: I.D, z: I.z, dtBias: I.dt_bias, dtSoftplus: bool(a, 'dt_softplus'), initialState: I.initial_states }, need(I, 'dout'));
      return pick({ out: r.out, dx: r.dx, ddt: r.ddt, dA: r.dA, dB: r.dB, dC: r.dC, dD: r.dD, dz: r.dz, ddt_bias: r.ddtBias, dinitial_states: r.dInitialState });
    },
    generate(r, s) {
      const f = GOLDEN_OPS.ssd_chunk_scan!.generate(r, s);
      const { initial_states: _drop, ...inputs } = f.inputs;
      return { inputs: { ...inputs, dout: N(r, f.inputs.x!.shape as number[]) }, attrs: { ...f.attrs, layout: this.layout } };
    },
  },
  gated_rmsnorm_grad: {
    op: 'gated_rmsnorm_grad',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/triton/layernorm_gated.py::rms_norm_ref, backward by torch.autograd',
    layout: 'as gated_rmsnorm; dout given; outputs dx, dweight, dz',
    async run(ops, I, a) {
      const eps = a.eps ?? 1e-6;
      if (typeof eps !== 'number') throw new GoldenFormatError('case attrs', `'eps' must be a number`);
      const gs = a.group_size ?? undefined;
      const r = await ops.gatedRmsnormBackward(need(I, 'x'), need(I, 'weight'), I.z, need(I, 'dout'), {
        eps,
        groupSize: gs === undefined || gs === null ? undefined : int(a, 'group_size'),
        normBeforeGate: bool(a, 'norm_before_gate', true),
      });
      return pick({ out: r.out, dx: r.dx, dweight: r.dweight, dz: r.dz });
    },
    generate(r, s) {
      const f = GOLDEN_OPS.gated_rmsnorm!.generate(r, s);
      return { inputs: { ...f.inputs, dout: N(r, f.inputs.x!.shape as number[]) }, attrs: { ...f.attrs, norm_before_gate: r.next() < 0.5, layout: this.layout } };
    },
  },
};
