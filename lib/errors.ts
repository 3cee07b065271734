/**
 * Typed errors of mamba-in-llama.
 *
 * Every error names what is wrong: the tensor, the expected and the actual shape
 * or value. Callers can branch on `instanceof` or on the stable `code` field.
 */

/** Base class: every error this library throws on bad input is a MilError. */
export class MilError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A tensor has the wrong shape. `expected` may contain symbolic names, resolved where known. */
export class ShapeError extends MilError {
  constructor(
    readonly tensor: string,
    readonly expected: string,
    readonly actual: readonly number[],
    detail = '',
  ) {
    super(
      'E_SHAPE',
      `tensor '${tensor}': expected shape ${expected}, got [${actual.join(', ')}]${detail ? ` (${detail})` : ''}`,
    );
  }
}

/** A tensor has the wrong dtype. */
export class DTypeError extends MilError {
  constructor(
    readonly tensor: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super('E_DTYPE', `tensor '${tensor}': expected dtype ${expected}, got ${actual}`);
  }
}

/** A tensor holds NaN or ±Inf where the op cannot take it. */
export class NonFiniteError extends MilError {
  constructor(
    readonly tensor: string,
    readonly index: number,
    readonly value: number,
  ) {
    super('E_NONFINITE', `tensor '${tensor}': non-finite value ${value} at flat index ${index}`);
  }
}

/** A scalar argument or option is out of range or inconsistent. */
export class ArgumentError extends MilError {
  constructor(
    readonly argument: string,
    readonly expected: string,
    readonly actual: unknown,
  ) {
    super('E_ARGUMENT', `argument '${argument}': expected ${expected}, got ${fmt(actual)}`);
  }
}

/** A backend name that this library does not know. */
export class UnknownBackendError extends MilError {
  constructor(
    readonly backend: string,
    readonly known: readonly string[],
  ) {
    super('E_BACKEND_UNKNOWN', `unknown backend '${backend}': expected one of ${known.join(', ')}`);
  }
}

/** A known backend that cannot run on this machine; `reason` says why. Never silently replaced. */
export class BackendUnavailableError extends MilError {
  constructor(
    readonly backend: string,
    readonly reason: string,
  ) {
    super('E_BACKEND_UNAVAILABLE', `backend '${backend}' is not available here: ${reason}`);
  }
}

/** A GPU.js kernel failed to compile or run on a backend; `kernel` names it. */
export class KernelError extends MilError {
  constructor(
    readonly backend: string,
    readonly kernel: string,
    readonly detail: string,
  ) {
    super('E_KERNEL', `kernel '${kernel}' failed on backend '${backend}': ${detail}`);
  }
}

/**
 * A model that does not fit a GPU device's limits (checked before anything is uploaded): `limit` names the
 * device limit (e.g. maxStorageBufferBindingSize), `need` what the model asks of it, `value` the device's value.
 */
export class DeviceLimitError extends MilError {
  constructor(
    readonly limit: string,
    readonly need: string,
    readonly value: number,
  ) {
    super('E_DEVICE_LIMIT', `this WebGPU device's ${limit} is ${value}, and the model needs ${need}`);
  }
}

/** A golden folder or file that does not follow FORMAT.md (`mil-golden/1`). */
export class GoldenFormatError extends MilError {
  constructor(
    readonly where: string,
    readonly problem: string,
  ) {
    super('E_GOLDEN_FORMAT', `${where}: ${problem}`);
  }
}

/** A safetensors file that is malformed (truncated, lying header, overlapping ranges...). */
export class SafetensorsError extends MilError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super('E_SAFETENSORS', `${file}: ${problem}`);
  }
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
