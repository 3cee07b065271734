/**
 * The onnxruntime-node peer (its CPU execution provider, MLAS kernels) of the product benches: graphs written
 * here as ONNX protobuf with onnx-proto, run on one intra-op thread. session.run is async, so a time measured
 * through it includes the promise round trip its callers pay.
 */
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';

/** An onnxruntime session computing y = x·w for x (M×K) and the constant w (K×N) — one MatMul node. */
export async function ortMatMul(M: number, K: number, N: number, wt: Float32Array): Promise<ort.InferenceSession> {
  const { onnx } = onnxProto;
  const FLOAT = 1; // onnx.TensorProto.DataType.FLOAT
  const io = (name: string, dims: number[]) => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'mamba-in-llama bench/gemv.ts',
    graph: {
      name: 'gemv',
      input: [io('x', [M, K])],
      output: [io('y', [M, N])],
      initializer: [
        { name: 'w', dims: [K, N], dataType: FLOAT, rawData: new Uint8Array(wt.buffer, wt.byteOffset, wt.byteLength) },
      ],
      node: [{ opType: 'MatMul', input: ['x', 'w'], output: ['y'] }],
    },
  });
  return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
}
