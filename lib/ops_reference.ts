/**
 * The 'reference' backend: every op as its float64 reference in lib/ref/ (what the golden vectors check). Kept
 * apart from lib/ops.ts so code that needs only these (the browser page, web/) pulls in no kernel runtime.
 */
import type { Ops } from './ops.js';
import { linear as refLinear, linearsDims, matmul as refMatmul } from './ref/linear.js';
import { gatedMlp as refGatedMlp } from './ref/mlp.js';
import { linearAttentionParallel } from './ref/linear_attention.js';
import { selectiveScanBackward, selectiveScan as refScan } from './ref/selective_scan.js';
import { selectiveStateUpdate as refStateUpdate } from './ref/state_update.js';
import { causalConv1dBackward, causalConv1d as refConv, causalConv1dUpdate as refConvUpdate } from './ref/conv1d.js';
import { ssdBackward, ssdChunked, ssdMinimalDiscrete as refSsdMinimal } from './ref/ssd.js';
import { gatedRmsnormBackward, gatedRmsnorm as refGatedRmsnorm } from './ref/norm.js';
import { multistep as refMultistep } from './ref/multistep.js';

export const referenceOps: Ops = {
  name: 'reference',
  dtype: 'float64',
  matmul: async (a, b) => refMatmul(a, b),
  linear: async (x, w, b) => refLinear(x, w, b),
  gatedMlp: async (x, gate, up, down) => refGatedMlp(x, gate, up, down),
  linears: async (x, ws) => {
    linearsDims(x, ws);
    return ws.map((w) => refLinear(x, w.weight, w.bias));
  },
  linearAttention: async (q, k, v, g) => linearAttentionParallel(q, k, v, g),
  selectiveScan: async (inp) => refScan(inp),
  selectiveStateUpdate: async (inp) => refStateUpdate(inp),
  causalConv1d: async (inp) => refConv(inp),
  causalConv1dUpdate: async (inp) => refConvUpdate(inp),
  ssdChunkScan: async (inp, chunk) => ssdChunked(inp, chunk),
  ssdMinimalDiscrete: async (X, A, B, C, bl, init) => refSsdMinimal(X, A, B, C, bl, init),
  gatedRmsnorm: async (x, w, z, o) => refGatedRmsnorm(x, w, z, o),
  multistep: async (inp) => refMultistep(inp),
  selectiveScanBackward: async (inp, dout, dLast) => selectiveScanBackward(inp, dout, dLast),
  causalConv1dBackward: async (inp, dout, dFin) => causalConv1dBackward(inp, dout, dFin),
  ssdBackward: async (inp, dout, dFin) => ssdBackward(inp, dout, dFin),
  gatedRmsnormBackward: async (x, w, z, dy, o) => gatedRmsnormBackward(x, w, z, dy, o),
};
