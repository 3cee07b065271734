/**
 * The backward ops on the GPU.js backends (float32): host-side shapes and layouts around the kernels in
 * kernels/*_backward.ts and kernels/gated_rmsnorm.ts. Each takes the forward's inputs plus ∂ℓ/∂outputs and
 * returns the forward's outputs and ∂ℓ/∂inputs, as its float64 reference in lib/ref/ does (the same names).
 *
 * The SSD's backward runs as the Mamba-1 scan's: the SSD is a selective scan whose channels are (head h,
 * head channel p) — u = x, Δ per head repeated over p, A, D and dt_bias per head, B and C grouped — so its
 * gradients are the scan's, with each per-head parameter's summed over p (the chain rule for a repeat).
 */
import { ArgumentError } from './errors.js';
import { Tensor, dims } from './tensor.js';
import { type GpuRuntime } from '../kernels/runtime.js';
import { f32 } from './weight_registry.js';
import { defaultScanChunk, type ScanArgs, type ScanShape } from '../kernels/selective_scan.js';
import { selectiveScanBackwardKernel } from '../kernels/selective_scan_backward.js';
import { conv1dBackwardKernel } from '../kernels/conv1d_backward.js';
import { gatedRmsnormBackwardKernel } from '../kernels/gated_rmsnorm.js';
import {
  selectiveScanDims,
  type SelectiveScanGrads,
  type SelectiveScanInputs,
  type SelectiveScanOutputs,
} from './ref/selective_scan.js';
import { conv1dDims, type Conv1dInputs } from './ref/conv1d.js';
import { ssdDims, type SsdGrads, type SsdInputs, type SsdOutputs } from './ref/ssd.js';
import type { GatedRmsnormOptions } from './ref/norm.js';

export type ConvGrads = {
  out: Tensor;
  finalStates: Tensor;
  dx: Tensor;
  dweight: Tensor;
  dbias?: Tensor;
  dinitialStates?: Tensor;
};
export type NormGrads = { out: Tensor; dx: Tensor; dweight: Tensor; dz?: Tensor };

/** The backward half of `Ops` (lib/ops.ts). */
export interface GradOps {
  selectiveScanBackward(
    inp: SelectiveScanInputs,
    dout: Tensor,
    dLastState?: Tensor,
  ): Promise<SelectiveScanOutputs & SelectiveScanGrads>;
  causalConv1dBackward(inp: Conv1dInputs, dout: Tensor, dFinalStates?: Tensor): Promise<ConvGrads>;
  ssdBackward(inp: SsdInputs, dout: Tensor, dFinalState?: Tensor): Promise<SsdOutputs & SsdGrads>;
  gatedRmsnormBackward(
    x: Tensor,
    weight: Tensor,
    z: Tensor | undefined,
    dy: Tensor,
    opts?: GatedRmsnormOptions,
  ): Promise<NormGrads>;
}

const t32 = (data: Float32Array, shape: readonly number[], name: string) => new Tensor(data, shape, name);
const opt = (t: Tensor | undefined) => (t ? f32(t.data) : undefined);

/** A selective scan's inputs as the kernels take them: validated sizes and B/C layouts, float32 arrays. */
export function scanKernelInputs(inp: SelectiveScanInputs, chunk: number): { shape: ScanShape; args: ScanArgs } {
  const { batch, dim, L, N, Bl, Cl } = selectiveScanDims(inp);
  const { u, delta, A, B, C, D, z, deltaBias, initialState } = inp;
  return {
    shape: {
      batch: batch,
      dim: dim,
      L: L,
      N: N,
      bKind: Bl.kind,
      bGroups: Bl.groups,
      cKind: Cl.kind,
      cGroups: Cl.groups,
      chunk,
    },
    args: {
      u: f32(u.data),
      delta: f32(delta.data),
      A: f32(A.data),
      B: f32(B.data),
      C: f32(C.data),
      D: opt(D),
      z: opt(z),
      deltaBias: opt(deltaBias),
      deltaSoftplus: !!inp.deltaSoftplus,
      initialState: opt(initialState),
    },
  };
}

export function kernelGradOps(
  rt: GpuRuntime,
  forward: {
    causalConv1d(inp: Conv1dInputs): Promise<{ out: Tensor; finalStates: Tensor }>;
    gatedRmsnorm(x: Tensor, w: Tensor, z: Tensor | undefined, o?: GatedRmsnormOptions): Promise<Tensor>;
  },
): GradOps {
  const scan = async (inp: SelectiveScanInputs, dout: Tensor, dLast?: Tensor) => {
    const { shape, args } = scanKernelInputs(inp, defaultScanChunk(inp.u.shape[2] ?? 1));
    const { batch, dim, L, N } = shape;
    dims({ dout: [dout, [batch, dim, L]], dLastState: [dLast, [batch, dim, N]] });
    const r = await selectiveScanBackwardKernel(rt, shape, { ...args, dout: f32(dout.data), dLastState: opt(dLast) });
    return { r, batch, dim, L, N };
  };
  return {
    async selectiveScanBackward(inp, dout, dLast) {
      const { r, batch, dim, L, N } = await scan(inp, dout, dLast);
      const g: SelectiveScanOutputs & SelectiveScanGrads = {
        out: t32(r.out, [batch, dim, L], 'out'),
        lastState: t32(r.lastState, [batch, dim, N], 'last_state'),
        du: t32(r.du, inp.u.shape, 'du'),
        ddelta: t32(r.ddelta, inp.delta.shape, 'ddelta'),
        dA: t32(r.dA, inp.A.shape, 'dA'),
        dB: t32(r.dB, inp.B.shape, 'dB'),
        dC: t32(r.dC, inp.C.shape, 'dC'),
      };
      if (r.dD) g.dD = t32(r.dD, inp.D!.shape, 'dD');
      if (r.dz) g.dz = t32(r.dz, inp.z!.shape, 'dz');
      if (r.ddeltaBias) g.ddeltaBias = t32(r.ddeltaBias, inp.deltaBias!.shape, 'ddelta_bias');
      if (r.dInitialState) g.dInitialState = t32(r.dInitialState, inp.initialState!.shape, 'dinitial_state');
      return g;
    },

    async causalConv1dBackward(inp, dout, dFin) {
      const { batch, dim, L, W } = conv1dDims(inp);
      dims({ dout: [dout, [batch, dim, L]], dFinalStates: [dFin, [batch, dim, W - 1]] });
      const fwd = await forward.causalConv1d(inp);
      const r = await conv1dBackwardKernel(
        rt,
        { batch, dim, L, W },
        {
          x: f32(inp.x.data),
          weight: f32(inp.weight.data),
          bias: opt(inp.bias),
          initialStates: opt(inp.initialStates),
          silu: inp.activation === 'silu',
          dout: f32(dout.data),
          dFinalStates: opt(dFin),
        },
      );
      const g: ConvGrads = {
        ...fwd,
        dx: t32(r.dx, inp.x.shape, 'dx'),
        dweight: t32(r.dweight, inp.weight.shape, 'dweight'),
      };
      if (r.dbias) g.dbias = t32(r.dbias, inp.bias!.shape, 'dbias');
      if (r.dinitialStates) g.dinitialStates = t32(r.dinitialStates, inp.initialStates!.shape, 'dinitial_states');
      return g;
    },

    async ssdBackward(inp, dout, dFinal) {
      const { batch, L, H, P, G, N } = ssdDims(inp);
      dims({ dout: [dout, [batch, L, H, P]], dFinalState: [dFinal, [batch, H, P, N]] });
      const dim = H * P;
      // (b, L, H, P) ↔ (b, dim, L) with channel d = h·P + p;  (b, L, G, N) ↔ (b, G, N, L)
      const toScan = (t: Tensor) => t.reshape([batch, L, dim]).transpose([0, 2, 1]);
      const fromScan = (t: Tensor, name: string) =>
        t.transpose([0, 2, 1]).reshape([batch, L, H, P]).astype('float32').named(name);
      const perHead = (t: Tensor, shape: number[]) =>
        new Tensor(
          Float64Array.from(
            { length: shape.reduce((a, b) => a * b, 1) },
            (_, i) => t.data[Math.floor(i / (shape.length === 2 ? P * N : P))],
          ),
          shape,
        );
      const bc = (t: Tensor) => t.transpose([0, 2, 3, 1]);
      const { r } = await scan(
        {
          u: toScan(inp.x),
          delta: new Tensor(
            Float64Array.from(
              { length: batch * dim * L },
              (_, i) =>
                inp.delta.data[
                  (Math.floor(i / (dim * L)) * L + (i % L)) * H + Math.floor((Math.floor(i / L) % dim) / P)
                ],
            ),
            [batch, dim, L],
          ),
          A: perHead(inp.A, [dim, N]),
          B: bc(inp.B),
          C: bc(inp.C),
          D: inp.D && perHead(inp.D, [dim]),
          z: inp.z && toScan(inp.z),
          deltaBias: inp.deltaBias && perHead(inp.deltaBias, [dim]),
          deltaSoftplus: inp.deltaSoftplus,
          initialState: inp.initialState?.reshape([batch, dim, N]),
        },
        toScan(dout),
        dFinal?.reshape([batch, dim, N]),
      );
      // per-head parameters: the sum over their head's channels
      const sumHeads = (a: Float32Array, per: number, name: string) => {
        const out = new Float32Array(H);
        for (let i = 0; i < a.length; i++) out[Math.floor(i / per)] += a[i];
        return t32(out, [H], name);
      };
      const ddtScan = new Tensor(r.ddelta, [batch, dim, L]);
      const ddt = new Float32Array(batch * L * H);
      for (let b = 0; b < batch; b++)
        for (let d = 0; d < dim; d++)
          for (let t = 0; t < L; t++) ddt[(b * L + t) * H + Math.floor(d / P)] += ddtScan.data[(b * dim + d) * L + t];
      const fromBc = (a: Float32Array, name: string) =>
        new Tensor(a, [batch, G, N, L]).transpose([0, 3, 1, 2]).astype('float32').named(name);
      const g: SsdOutputs & SsdGrads = {
        out: fromScan(new Tensor(r.out, [batch, dim, L]), 'out'),
        finalState: t32(r.lastState, [batch, H, P, N], 'final_state'),
        dx: fromScan(new Tensor(r.du, [batch, dim, L]), 'dx'),
        ddelta: t32(ddt, inp.delta.shape, 'ddt'),
        dA: sumHeads(r.dA, P * N, 'dA'),
        dB: fromBc(r.dB, 'dB'),
        dC: fromBc(r.dC, 'dC'),
      };
      if (r.dD) g.dD = sumHeads(r.dD, P, 'dD');
      if (r.dz) g.dz = fromScan(new Tensor(r.dz, [batch, dim, L]), 'dz');
      if (r.ddeltaBias) g.ddeltaBias = sumHeads(r.ddeltaBias, P, 'ddt_bias');
      if (r.dInitialState) g.dInitialState = t32(r.dInitialState, [batch, H, P, N], 'dinitial_state');
      return g;
    },

    async gatedRmsnormBackward(x, weight, z, dy, o = {}) {
      const d = x.shape[x.rank - 1];
      const lead = x.shape.slice(0, -1);
      dims({ x: [x, [...lead, 'd']], weight: [weight, ['d']], z: [z, [...lead, 'd']], dy: [dy, [...lead, 'd']] });
      const gs = o.groupSize ?? d;
      if (!Number.isInteger(gs) || gs <= 0 || d % gs !== 0)
        throw new ArgumentError('groupSize', `a positive divisor of ${d}`, gs);
      const out = await forward.gatedRmsnorm(x, weight, z, o);
      const r = await gatedRmsnormBackwardKernel(
        rt,
        x.size / d,
        d,
        gs,
        o.eps ?? 1e-6,
        o.normBeforeGate ?? true,
        f32(x.data),
        f32(weight.data),
        opt(z),
        f32(dy.data),
      );
      const g: NormGrads = { out, dx: t32(r.dx, x.shape, 'dx'), dweight: t32(r.dweight, weight.shape, 'dweight') };
      if (r.dz) g.dz = t32(r.dz, z!.shape, 'dz');
      return g;
    },
  };
}
