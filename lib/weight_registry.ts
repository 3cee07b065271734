/**
 * Which arrays are model weights (immutable until a training step says otherwise), and the float32 copies
 * made of them once. CPU and GPU code alike ask here; kernels/runtime.ts (the GPU.js runtime) listens for
 * changes to drop what it keeps resident on a device, so lib/ never depends on kernels/.
 *
 *   markImmutable(a)   a is a weight: derived copies of it (its float32 copy, packed SIMD panels, device
 *                      buffers) may be made once and reused
 *   markChanged(a)     a weight was changed in place (a training step): every derived copy is dropped and
 *                      every listener (onArrayChanged) told, with the float32 copy that was dropped
 *   f32(a)             a flat float32 input: a weight's copy is made once; anything else is converted per call
 */
import { forgetFinite, type FloatArray } from './tensor.js';

const immutable = new WeakSet<object>();
const f32Copies = new WeakMap<object, Float32Array>();
/**
 * Float32 inputs that stay equal to themselves until markChanged: the immutable Float32Arrays and the
 * cached copies of the other immutable arrays. A device backend may keep them resident (uploaded once).
 */
const stableInputs = new WeakSet<Float32Array>();

/**
 * Declare an array immutable (model weights): its float32 copy for the kernels is then made once and
 * reused. Arrays not declared so are converted at every call, since they may change in place.
 */
export function markImmutable(a: FloatArray): void {
  immutable.add(a);
}

/** Was `a` declared immutable (a model weight)? Backends may keep derived copies of it. */
export function isImmutable(a: FloatArray): boolean {
  return immutable.has(a);
}

/** Is this float32 array one that stays equal to itself until markChanged (see stableInputs)? */
export function isStableInput(a: Float32Array): boolean {
  return stableInputs.has(a);
}

/** A listener told of a changed weight `a` and of the float32 copy of it that was dropped, if any. */
export type ChangeListener = (a: FloatArray, droppedCopy: Float32Array | undefined) => void;
const changeListeners: ChangeListener[] = [];

/** Be told when an immutable array was changed in place (to drop copies derived from it). */
export function onArrayChanged(f: ChangeListener): void {
  changeListeners.push(f);
}

/** An immutable array was changed in place (a training step): drop its cached float32 copy, tell the listeners. */
export function markChanged(a: FloatArray): void {
  const copy = f32Copies.get(a);
  f32Copies.delete(a);
  forgetFinite(a);
  for (const f of changeListeners) f(a, copy);
}

/** A flat input for a kernel: converted to Float32Array (float32 backends round here). */
export function f32(a: FloatArray | ArrayLike<number>): Float32Array {
  if (a instanceof Float32Array) {
    if (immutable.has(a)) stableInputs.add(a);
    return a;
  }
  if (immutable.has(a)) {
    let c = f32Copies.get(a);
    if (!c) {
      f32Copies.set(a, (c = new Float32Array(a)));
      stableInputs.add(c);
    }
    return c;
  }
  return new Float32Array(a);
}
