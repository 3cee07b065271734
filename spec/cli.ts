/**
 * Test helpers for commands: `mil` run in this process (lib/cli/main.ts) with its output captured, and a
 * folder's exact content as hashes (what "nothing was touched" is checked with).
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { vi } from 'vitest';

/** Run `mil ARGS` in this process: its exit status and what it printed on stdout and stderr (console and streams). */
export async function runMil(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const spies = [
    vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void (err += a.join(' ') + '\n')),
    vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out += a.join(' ') + '\n')),
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true),
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true),
  ];
  try {
    const { main } = await import('../lib/cli/main.js'); // loaded on first use: snapshot() alone stays light
    return { code: await main(args), out, err };
  } finally {
    for (const s of spies) s.mockRestore();
  }
}

/** Every regular file under `dir` with a hash of its bytes (the folder's exact content). */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}
