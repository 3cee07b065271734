/**
 * Strict JSON input: every JSON file this project reads (configs, golden files, safetensors headers)
 * comes through here.
 *
 * - `findDuplicateKey(text)`: JSON.parse keeps the last of two equal keys silently; a checkpoint header or
 *   config with a duplicated key is ambiguous (a duplicate can swap two tensors), so it is rejected.
 * - `readRegularFile(path, maxBytes)`: refuses FIFOs, devices, folders and files over a cap before reading
 *   (a FIFO would hang, /dev/zero would fill memory).
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { MilError } from '../errors.js';

/** A file that is not what the reader expects (not a regular file, too large, unreadable, bad JSON). */
export class InputFileError extends MilError {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super('E_INPUT_FILE', `${path}: ${problem}`);
  }
}

/**
 * The first key that appears twice in one object of a JSON text (as a path like `a.b`), or null.
 * The text must already be valid JSON (run JSON.parse first); this scanner only tracks keys.
 */
function findDuplicateKey(text: string): string | null {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const str = (): string => {
    const start = i;
    i++; // opening quote
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): string | null => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return null;
      }
      for (;;) {
        ws();
        const k = str();
        const where = path ? `${path}.${k}` : k;
        if (seen.has(k)) return where;
        seen.add(k);
        ws();
        i++; // ':'
        const d = value(where);
        if (d) return d;
        ws();
        if (text[i++] === '}') return null; // else ','
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return null;
      }
      for (let n = 0; ; n++) {
        const d = value(`${path}[${n}]`);
        if (d) return d;
        ws();
        if (text[i++] === ']') return null;
      }
    }
    if (c === '"') {
      str();
      return null;
    }
    while (i < text.length && !',]} \t\n\r'.includes(text[i])) i++; // number, true, false, null
    return null;
  };
  return value('');
}

/** JSON.parse plus the duplicate-key check; errors name `where`. */
export function parseJsonStrict(
  text: string,
  where: string,
  fail: (problem: string) => Error = (p) => new InputFileError(where, p),
): unknown {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw fail(`not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  const dup = findDuplicateKey(text);
  if (dup !== null) throw fail(`key '${dup}' appears twice`);
  return v;
}

/** Read a regular file of at most `maxBytes`, refusing anything else before reading a byte. */
export function readRegularFile(path: string, maxBytes: number): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new InputFileError(path, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!st.isFile()) throw new InputFileError(path, `not a regular file (${fileKind(st)})`);
  if (st.size > maxBytes)
    throw new InputFileError(path, `${st.size} bytes, over the limit of ${maxBytes} for this kind of file`);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new InputFileError(path, `cannot open (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const st2 = fstatSync(fd); // the file opened may differ from the one stat'ed (a swapped link)
    if (!st2.isFile() || st2.size > maxBytes) throw new InputFileError(path, 'changed while being opened');
    const buf = Buffer.alloc(st2.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) throw new InputFileError(path, `file shrank while being read (${off} of ${buf.length} bytes)`);
      off += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** What a non-regular file is, for errors that refuse it: 'a folder', 'a FIFO', … */
export function fileKind(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Read a JSON object file (configs, golden json): regular file, ≤ 16 MiB, strict JSON, an object. */
export function readJsonObject(
  path: string,
  fail: (problem: string) => Error = (p) => new InputFileError(path, p),
): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readRegularFile(path, 16 * 1024 * 1024));
  } catch (e) {
    if (e instanceof InputFileError) throw fail(e.problem);
    throw fail(`not valid UTF-8`);
  }
  const v = parseJsonStrict(text, path, fail);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail('not a JSON object');
  return v as Record<string, unknown>;
}
