/**
 * Command-line arguments: node's `util.parseArgs` tokenizer (no dependency: it ships with Node ≥ 18.3 and
 * splits `--a=b`, `--a b`, `-k 4` exactly as POSIX users expect) under a typed, declarative layer of our
 * own — parseArgs knows only strings and booleans, and we need integers, ranges, enums and id lists, with
 * every message naming the option. Rules, all checked before a command does any work:
 *   - an unknown option is an error, with a "did you mean" suggestion;
 *   - a value option needs a non-empty value; a switch takes none; an option given twice is an error;
 *   - values are typed and range-checked (integers are plain decimal integers: 1e9 and 0x10 are refused);
 *   - positionals are counted.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type OptSpec =
  | { kind: 'switch'; short?: string; help?: string }
  | { kind: 'int'; min: number; max: number; short?: string; help?: string }
  | { kind: 'number'; min: number; max: number; short?: string; help?: string }
  | { kind: 'string'; short?: string; help?: string; pattern?: RegExp; patternHelp?: string }
  | { kind: 'enum'; choices: readonly string[]; short?: string; help?: string }
  | { kind: 'ints'; min: number; max: number; allowEmpty?: boolean; short?: string; help?: string };

export type Parsed = { positionals: string[]; values: Record<string, string | number | boolean | number[]> };

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

export function suggest(name: string, known: readonly string[]): string {
  let best = '';
  let bd = Infinity;
  for (const k of known) {
    const dd = distance(name, k);
    if (dd < bd || (dd === bd && k.startsWith(name))) [best, bd] = [k, dd];
  }
  const prefix = known.filter((k) => k.startsWith(name));
  if (prefix.length === 1) return prefix[0];
  return bd <= Math.max(2, Math.floor(name.length / 3)) ? best : '';
}

const INT = /^[+-]?\d+$/;

function convert(name: string, spec: OptSpec, raw: string): string | number | number[] {
  const flag = `--${name}`;
  if (raw === '' && !(spec.kind === 'ints' && spec.allowEmpty))
    throw new UsageError(`${flag} needs a value, got an empty string`);
  switch (spec.kind) {
    case 'int': {
      const v = Number(raw);
      if (!INT.test(raw.trim()) || !Number.isSafeInteger(v))
        throw new UsageError(`${flag} must be an integer in [${spec.min}, ${spec.max}], got '${raw}'`);
      if (v < spec.min || v > spec.max)
        throw new UsageError(`${flag} must be an integer in [${spec.min}, ${spec.max}], got ${raw}`);
      return v;
    }
    case 'number': {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v))
        throw new UsageError(`${flag} must be a number in [${spec.min}, ${spec.max}], got '${raw}'`);
      if (v < spec.min || v > spec.max)
        throw new UsageError(`${flag} must be a number in [${spec.min}, ${spec.max}], got ${raw}`);
      return v;
    }
    case 'enum':
      if (!spec.choices.includes(raw)) {
        const s = suggest(raw, spec.choices);
        throw new UsageError(
          `${flag} must be one of ${spec.choices.join(', ')}, got '${raw}'${s ? ` (did you mean '${s}'?)` : ''}`,
        );
      }
      return raw;
    case 'string':
      if (spec.pattern && !spec.pattern.test(raw))
        throw new UsageError(`${flag} must be ${spec.patternHelp ?? `of the form ${spec.pattern}`}, got '${raw}'`);
      return raw;
    case 'ints': {
      if (raw === '') return [];
      const parts = raw.split(',');
      const out: number[] = [];
      for (const p of parts) {
        const t = p.trim();
        const v = Number(t);
        if (!INT.test(t) || !Number.isSafeInteger(v) || v < spec.min || v > spec.max)
          throw new UsageError(
            `${flag} must be comma-separated integers in [${spec.min}, ${spec.max}], got '${raw}' (entry '${p}')`,
          );
        out.push(v);
      }
      return out;
    }
    case 'switch':
      throw new UsageError(`${flag} takes no value`);
  }
}

/** Parse `argv` against `options`; `positionals` is [min, max] of the count. */
export function parseCommand(
  command: string,
  argv: string[],
  options: Record<string, OptSpec>,
  positionals: [number, number] = [0, 0],
): Parsed {
  const pa: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [k, s] of Object.entries(options))
    pa[k] = { type: s.kind === 'switch' ? 'boolean' : 'string', ...(s.short ? { short: s.short } : {}) };
  const { tokens } = parseArgs({ args: argv, options: pa, strict: false, allowPositionals: true, tokens: true });
  const values: Parsed['values'] = {};
  const pos: string[] = [];
  const known = Object.keys(options);
  for (const t of tokens ?? []) {
    if (t.kind === 'positional') {
      pos.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') continue;
    const spec = options[t.name];
    if (!spec) {
      const s = suggest(t.name, known);
      throw new UsageError(
        `${command}: unknown option '${t.rawName}'${s ? ` (did you mean '--${s}'?)` : ''}; options: ${known.map((k) => `--${k}`).join(' ') || 'none'}`,
      );
    }
    if (t.name in values) throw new UsageError(`${command}: --${t.name} given twice`);
    if (spec.kind === 'switch') {
      if (t.value !== undefined) throw new UsageError(`--${t.name} takes no value, got '${t.value}'`);
      values[t.name] = true;
    } else {
      if (t.value === undefined) throw new UsageError(`--${t.name} needs a value`);
      values[t.name] = convert(t.name, spec, t.value);
    }
  }
  const [lo, hi] = positionals;
  if (pos.length > hi)
    throw new UsageError(
      `${command}: unexpected argument${pos.length - hi > 1 ? 's' : ''} ${pos
        .slice(hi)
        .map((p) => `'${p}'`)
        .join(' ')}`,
    );
  if (pos.length < lo) throw new UsageError(`${command}: needs ${lo} argument${lo > 1 ? 's' : ''}, got ${pos.length}`);
  return { positionals: pos, values };
}
