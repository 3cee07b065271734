/**
 * Random cases for the conformance harness: for every op `golden verify` knows (forward and backward) and
 * for `model`, a fast-check arbitrary over shapes (sizes of 1 included, lengths not a multiple of the chunk),
 * every optional input present or absent, every option on and off, and inputs at large (×1e3) and tiny (×1e-3)
 * magnitudes; `buildCase` turns a draw into inputs, attributes and the float64 reference's outputs.
 *
 * Draws shrink towards the smallest case: sizes towards 1, optional inputs towards absent, options towards
 * the generator's defaults, magnitudes towards ×1, the values' seed towards 0 — so a failure shrinks to the
 * fewest dimensions and options that still show it, with the smallest value seed that still shows it.
 */
import fc from 'fast-check';
import { ArgumentError } from '../errors.js';
import { getOps } from '../ops.js';
import { Rng } from '../rng.js';
import { Tensor } from '../tensor.js';
import { GOLDEN_OPS, type Attrs, type Named, type ShapeOptions } from '../golden/ops.js';
import { randomLlama } from '../model/random.js';
import { convert } from '../model/convert.js';
import { forward, newCache, type HybridModel } from '../model/hybrid.js';
import { lookup } from '../checked.js';

type ShapeKey = keyof ShapeOptions;

export interface OpSpec {
  /** the shape options the op's generator reads, with the range drawn */
  shapes: Partial<Record<ShapeKey, [number, number]>>;
  /** make a draw valid (divisibility); applied after drawing */
  fix?: (s: Record<string, number>) => void;
  /** inputs the generator makes that may be left out */
  optional?: string[];
  /** optional inputs the generator does not make: drawn here when present */
  add?: Record<string, (r: Rng, I: Named) => Tensor>;
  /** attributes and the values each may take (the first is what shrinking goes back to) */
  toggles?: Record<string, unknown[]>;
  /** inputs that may be drawn at large or tiny magnitude */
  scalable?: string[];
}

const N = (r: Rng, shape: readonly number[]) => Tensor.normal(r, [...shape], 0, 1);
const divisible = (s: Record<string, number>, of: string, by: string) => {
  s[of] = Math.max(1, Math.ceil(lookup(s, of) / lookup(s, by))) * lookup(s, by);
};

const SCAN: OpSpec = {
  shapes: { batch: [1, 3], dim: [1, 8], len: [1, 20], state: [1, 6], groups: [0, 3] },
  fix: (s) => {
    if (s.groups > 0) divisible(s, 'dim', 'groups');
  },
  optional: ['D', 'z', 'delta_bias'],
  add: { initial_state: (r, I) => N(r, [I.u.shape[0], I.u.shape[1], I.A.shape[1]]) },
  toggles: { delta_softplus: [true, false] },
  scalable: ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias'],
};
const CONV: OpSpec = {
  shapes: { batch: [1, 3], dim: [1, 6], len: [1, 16], width: [2, 4] },
  optional: ['bias', 'initial_states'],
  toggles: { activation: ['silu', null] },
  scalable: ['x', 'weight', 'bias'],
};
const SSD: OpSpec = {
  shapes: { batch: [1, 2], len: [1, 20], heads: [1, 4], headdim: [1, 4], groups: [1, 2], state: [1, 5], chunk: [1, 8] },
  fix: (s) => {
    s.heads = Math.max(1, Math.ceil(s.heads / s.groups)) * s.groups;
  },
  optional: ['D', 'z', 'dt_bias'],
  add: { initial_states: (r, I) => N(r, [I.x.shape[0], I.x.shape[2], I.x.shape[3], I.B.shape[3]]) },
  toggles: { dt_softplus: [true, false] },
  scalable: ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dt_bias'],
};
const NORM: OpSpec = {
  shapes: { batch: [1, 3], len: [1, 5], dim: [1, 12], groups: [1, 4] },
  fix: (s) => divisible(s, 'dim', 'groups'),
  optional: ['z'],
  toggles: { norm_before_gate: [false, true] },
  scalable: ['x', 'weight', 'z'],
};

/** Shapes, options and magnitudes per op (every op of GOLDEN_OPS, and `model`). */
export const CONFORM_SPECS: Record<string, OpSpec> = {
  selective_scan: SCAN,
  selective_state_update: {
    shapes: { batch: [1, 3], dim: [1, 8], state: [1, 6], heads: [0, 3], headdim: [1, 3], groups: [1, 3] },
    fix: (s) => {
      if (s.heads > 0) s.heads = Math.max(1, Math.ceil(s.heads / s.groups)) * s.groups;
      else delete s.heads;
    },
    optional: ['D', 'z', 'dt_bias'],
    toggles: { dt_softplus: [true, false] },
    scalable: ['state', 'x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dt_bias'],
  },
  causal_conv1d: CONV,
  causal_conv1d_update: {
    shapes: { batch: [1, 3], dim: [1, 6], steps: [1, 4], width: [2, 4], len: [1, 7] },
    optional: ['bias', 'cache_seqlens'],
    toggles: { activation: ['silu', null] },
    scalable: ['x', 'conv_state', 'weight', 'bias'],
  },
  ssd_chunk_scan: SSD,
  ssd_minimal_discrete: {
    shapes: { batch: [1, 2], len: [1, 4], heads: [1, 3], headdim: [1, 4], state: [1, 5], chunk: [1, 5] },
    fix: (s) => {
      s.len = s.len * s.chunk; // the minimal SSD needs whole blocks
    },
    optional: ['initial_states'],
    scalable: ['X', 'B', 'C'],
  },
  gated_rmsnorm: NORM,
  multistep: {
    shapes: { batch: [1, 2], dim: [1, 8], state: [1, 5], steps: [1, 5], recompute: [0, 4] },
    optional: ['z', 'D', 'dt_bias'],
    toggles: { dt_softplus: [true, false] },
    scalable: ['h_i', 'x', 'dt', 'B', 'C', 'z', 'A'],
  },
  speculative: { shapes: { variant: [0, 1], vocab: [3, 16], k: [1, 4], len: [1, 5], steps: [1, 8] } },
  selective_scan_grad: { ...SCAN, scalable: ['u', 'B', 'C', 'D', 'z'] },
  causal_conv1d_grad: { ...CONV, optional: ['bias'] },
  ssd_chunk_scan_grad: { ...SSD, add: undefined, scalable: ['x', 'B', 'C', 'D', 'z'] },
  gated_rmsnorm_grad: NORM,
  model: { shapes: { variant: [0, 3], vocab: [3, 40], heads: [1, 3], len: [1, 12], batch: [1, 2] } },
};

export const CONFORM_OPS = Object.keys(CONFORM_SPECS);

export interface Draw {
  shapes: Record<string, number>;
  seed: number;
  present: Record<string, boolean>;
  toggles: Record<string, unknown>;
  scale: Record<string, number>;
}

export function drawArbitrary(op: string): fc.Arbitrary<Draw> {
  const s = CONFORM_SPECS[op];
  if (!s) throw new ArgumentError('--op', `one of ${CONFORM_OPS.join(', ')}`, op);
  const rec = <T>(keys: string[], a: () => fc.Arbitrary<T>) => fc.record(Object.fromEntries(keys.map((k) => [k, a()])));
  return fc.record({
    shapes: fc.record(
      Object.fromEntries(
        Object.entries(s.shapes).map(([k, [lo, hi]]) => [k, fc.integer({ min: lo, max: hi })]),
      ) as Record<string, fc.Arbitrary<number>>,
    ),
    // the values' seed shrinks towards 0 like every other choice, so a failure also shrinks to the smallest
    // seed (in fast-check's order) whose values still show it: a case is named by a short, reproducible draw
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    present: rec([...(s.optional ?? []), ...Object.keys(s.add ?? {})], () => fc.boolean()),
    toggles: fc.record(
      Object.fromEntries(Object.entries(s.toggles ?? {}).map(([k, vs]) => [k, fc.constantFrom(...vs)])) as Record<
        string,
        fc.Arbitrary<unknown>
      >,
    ),
    scale: rec(s.scalable ?? [], () => fc.constantFrom(1, 1e3, 1e-3)),
  });
}

export interface ConformCase {
  op: string;
  inputs: Named;
  attrs: Attrs;
  expected: Named;
  /** for `model`: the checkpoint the port reads */
  model?: HybridModel;
  /** the drawn shape options, after `fix` */
  shapes: Record<string, number>;
}

const VARIANTS = ['mamba2', 'mamba1', 'llama'] as const;
/** `model` also draws Mamba-1 with the 'clean' semantics (head_dim-wide pieces, the Δ bias added once) */
const MODEL_VARIANTS = [...VARIANTS, 'mamba1-clean'] as const;

/** Inputs, attributes and the float64 reference's outputs of a draw. */
export async function buildCase(op: string, d: Draw): Promise<ConformCase> {
  const spec = lookup(CONFORM_SPECS, op);
  const shapes = { ...d.shapes };
  spec.fix?.(shapes);
  const r = new Rng(d.seed);
  if (op === 'model') return buildModelCase(shapes, r);
  const so: ShapeOptions = { ...shapes };
  if (op === 'speculative') so.variant = VARIANTS[shapes.variant];
  if ('groups' in shapes && shapes.groups === 0) delete so.groups;
  const g = lookup(GOLDEN_OPS, op).generate(r, so);
  const inputs: Named = { ...g.inputs };
  for (const k of spec.optional ?? []) if (!d.present[k]) delete inputs[k];
  for (const [k, make] of Object.entries(spec.add ?? {})) if (d.present[k]) inputs[k] = make(r, inputs);
  for (const [k, f] of Object.entries(d.scale)) if (inputs[k] && f !== 1) inputs[k] = inputs[k].map((v) => v * f);
  const attrs: Attrs = { ...g.attrs, ...d.toggles };
  const expected = await lookup(GOLDEN_OPS, op).run(await getOps('reference'), inputs, attrs);
  return { op, inputs, attrs, expected, shapes };
}

async function buildModelCase(s: Record<string, number>, r: Rng): Promise<ConformCase> {
  const variant = MODEL_VARIANTS[s.variant];
  const heads = s.heads;
  const teacher = randomLlama(
    { vocab: s.vocab, hidden: 16 * heads, intermediate: 24, layers: 2, heads, kvHeads: 1, headDim: 16 },
    r.int(0, 1 << 30),
  );
  const model =
    variant === 'llama'
      ? teacher
      : convert(teacher, {
          variant: variant === 'mamba1-clean' ? 'mamba1' : variant,
          attnLayers: [1],
          seed: r.int(0, 1 << 30),
          semantics: variant === 'mamba1-clean' ? 'clean' : 'upstream',
        });
  const ids = Array.from({ length: s.batch }, () => Array.from({ length: s.len }, () => r.int(0, s.vocab - 1)));
  const logits = await forward(await getOps('reference'), model, ids, newCache(model, ids.length));
  return {
    op: 'model',
    inputs: { input_ids: Tensor.from(ids.flat(), [s.batch, s.len]) },
    attrs: {
      variant,
      layout:
        'input_ids: (batch, L) token ids; logits: (batch, L, vocab); the checkpoint is the folder model/ beside case.json',
    },
    expected: { logits: logits.astype('float64') },
    model,
    shapes: s,
  };
}
