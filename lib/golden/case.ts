/**
 * What every golden op shares: the case types (named tensors, attributes, the shape options of
 * `mil golden emit`), the GoldenOp interface, and the small readers and generators their `run` and `generate`
 * use (lib/golden/ops.ts holds the ops; lib/golden/speculative_case.ts the speculative scenario).
 */
import { GoldenFormatError } from '../errors.js';
import type { Ops } from '../ops.js';
import type { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';

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

export function need(I: Named, name: string): Tensor {
  const t = I[name];
  if (!t) throw new GoldenFormatError('case inputs', `missing required input '${name}'`);
  return t;
}
export function bool(a: Attrs, k: string, dflt = false): boolean {
  const v = a[k] ?? dflt;
  if (typeof v !== 'boolean') throw new GoldenFormatError('case attrs', `'${k}' must be true or false, got ${JSON.stringify(v)}`);
  return v;
}
export function int(a: Attrs, k: string): number {
  const v = a[k];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new GoldenFormatError('case attrs', `'${k}' must be an integer, got ${JSON.stringify(v)}`);
  return v;
}
export function activation(a: Attrs): 'silu' | null {
  const v = a.activation ?? null;
  if (v === 'silu' || v === 'swish') return 'silu';
  if (v === null) return null;
  throw new GoldenFormatError('case attrs', `'activation' must be null or 'silu', got ${JSON.stringify(v)}`);
}
/** The named tensors that exist (optional gradients are absent when their input is). */
export function pick(o: Record<string, Tensor | undefined>): Named {
  return Object.fromEntries(Object.entries(o).filter((e): e is [string, Tensor] => e[1] !== undefined));
}
export function ints(t: Tensor | undefined): number[] | undefined {
  if (!t) return undefined;
  const v = Array.from(t.data);
  if (!v.every((x) => Number.isInteger(x) && x >= 0)) throw new GoldenFormatError(t.name, 'must hold non-negative integers');
  return v;
}

export const N = (r: Rng, shape: number[], std = 1) => Tensor.normal(r, shape, 0, std);
export const U = (r: Rng, shape: number[], lo: number, hi: number) => Tensor.uniform(r, shape, lo, hi);
export const d = (v: number | undefined, dflt: number) => v ?? dflt;
