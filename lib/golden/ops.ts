/**
 * The golden-vector ops of FORMAT.md (`mil-golden/1`): for each op, how a case's named tensors map onto
 * this library's ops (`run`), and how to make a fresh random case of chosen shapes (`generate`, for
 * `mil golden emit`). Layouts and names are exactly the upstream ones listed in FORMAT.md. The shared
 * types and readers are in ./case.ts; the speculative scenario is in ./speculative_case.ts.
 */
import { GoldenFormatError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { activation, bool, d, int, ints, N, need, pick, U, type GoldenOp, type Named } from './case.js';
import { SPECULATIVE_OP } from './speculative_case.js';

export type { Attrs, GoldenOp, Named, ShapeOptions } from './case.js';

const SCAN_LAYOUT = 'u,delta,z,out: (batch,dim,L); A: (dim,N); B,C: (batch,N,L) | (batch,G,N,L) | (dim,N); last_state: (batch,dim,N)';
const MULTISTEP_LAYOUT =
  'h_i: (batch,dim,N) cached state; x_cache,dt_cache: (batch,K+1,dim), B_cache: (batch,K+1,N), first recompute_steps rows replayed from h_i; x,dt,z: (batch,steps,dim); B,C: (batch,steps,N); out: (batch,steps,dim); h_j: state after the replayed steps; h_k: state after all steps';

export const GOLDEN_OPS: Record<string, GoldenOp> = {
  speculative: SPECULATIVE_OP,
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
        delta: need(I, 'dt'),
        A: need(I, 'A'),
        B: need(I, 'B'),
        C: need(I, 'C'),
        D: I.D,
        z: I.z,
        deltaBias: I.dt_bias,
        deltaSoftplus: bool(a, 'dt_softplus'),
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
        { x: need(I, 'x'), delta: need(I, 'dt'), A: need(I, 'A'), B: need(I, 'B'), C: need(I, 'C'), D: I.D, z: I.z, deltaBias: I.dt_bias, deltaSoftplus: bool(a, 'dt_softplus'), initialState: I.initial_states },
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
        deltaCache: need(I, 'dt_cache'),
        BCache: need(I, 'B_cache'),
        recomputeSteps: int(a, 'recompute_steps'),
        x: need(I, 'x'),
        delta: need(I, 'dt'),
        B: need(I, 'B'),
        C: need(I, 'C'),
        z: I.z,
        A: need(I, 'A'),
        D: I.D,
        deltaBias: I.dt_bias,
        deltaSoftplus: bool(a, 'dt_softplus'),
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
      const f = GOLDEN_OPS.selective_scan.generate(r, s);
      const [b, dim, L] = f.inputs.u.shape as [number, number, number];
      const n = f.inputs.A.shape[1];
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
      const f = GOLDEN_OPS.causal_conv1d.generate(r, s);
      const x = f.inputs.x;
      const W = f.inputs.weight.shape[1];
      const extra: Named = { dout: N(r, x.shape as number[]) };
      if (f.inputs.initial_states) extra.dfinal_states = N(r, [x.shape[0], x.shape[1], W - 1]);
      return { inputs: { ...f.inputs, ...extra }, attrs: { ...f.attrs, layout: this.layout } };
    },
  },
  ssd_chunk_scan_grad: {
    op: 'ssd_chunk_scan_grad',
    upstream: 'state-spaces/mamba:mamba_ssm/ops/triton/ssd_combined.py::ssd_chunk_scan_combined_ref, backward by torch.autograd',
    layout: 'as ssd_chunk_scan; dout given; d<input> in the input\'s shape (computed by the recurrence run backwards)',
    async run(ops, I, a) {
      int(a, 'chunk_size'); // the chunking does not change the function: read for validation only
      const r = await ops.ssdBackward({ x: need(I, 'x'), delta: need(I, 'dt'), A: need(I, 'A'), B: need(I, 'B'), C: need(I, 'C'), D: I.D, z: I.z, deltaBias: I.dt_bias, deltaSoftplus: bool(a, 'dt_softplus'), initialState: I.initial_states }, need(I, 'dout'));
      return pick({ out: r.out, dx: r.dx, ddt: r.ddelta, dA: r.dA, dB: r.dB, dC: r.dC, dD: r.dD, dz: r.dz, ddt_bias: r.ddeltaBias, dinitial_states: r.dInitialState });
    },
    generate(r, s) {
      const f = GOLDEN_OPS.ssd_chunk_scan.generate(r, s);
      const inputs = { ...f.inputs };
      delete inputs.initial_states; // the backward case has none
      return { inputs: { ...inputs, dout: N(r, f.inputs.x.shape as number[]) }, attrs: { ...f.attrs, layout: this.layout } };
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
      const f = GOLDEN_OPS.gated_rmsnorm.generate(r, s);
      return { inputs: { ...f.inputs, dout: N(r, f.inputs.x.shape as number[]) }, attrs: { ...f.attrs, norm_before_gate: r.next() < 0.5, layout: this.layout } };
    },
  },
};
