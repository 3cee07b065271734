/**
 * A fake dictd dictionary for tests: `NAME.index` (headword, byte offset and length in dictd's base 64) and
 * `NAME.dict.dz` (the entries gzip'd) under ROOT/usr/share/dictd, as Debian's dict-* packages install them.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const b64 = (n: number) => {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  let s = '';
  do {
    s = A[n % 64] + s;
    n = Math.floor(n / 64);
  } while (n > 0);
  return s;
};

/** Write dictionary `name` of `entries` (raw entry texts; headword i is `head(i)`) below `root`. */
export function writeDictd(root: string, name: string, entries: string[], head: (i: number) => string): void {
  let off = 0;
  const index = entries.map((e, i) => {
    const line = `${head(i)}\t${b64(off)}\t${b64(Buffer.byteLength(e))}`;
    off += Buffer.byteLength(e);
    return line;
  });
  mkdirSync(join(root, 'usr/share/dictd'), { recursive: true });
  writeFileSync(join(root, 'usr/share/dictd', `${name}.index`), index.join('\n') + '\n');
  writeFileSync(join(root, 'usr/share/dictd', `${name}.dict.dz`), gzipSync(Buffer.from(entries.join(''))));
}
