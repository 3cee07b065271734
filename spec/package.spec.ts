/**
 * The package as a user gets it (issue #26): `npm pack` the repository (its `prepare` builds dist/), install the
 * tarball into a fresh folder with no dev dependencies, and from there:
 *  - the tarball holds every file package.json's `exports` and `bin` name, and the run-time files the library
 *    reads from the package root (asm/*.wasm, models/, golden/), and no TypeScript sources but declarations;
 *  - the README's library snippet (the block after `<!-- spec/package.spec.ts: consumer.mjs -->`) runs with
 *    plain `node`, importing every entry and calling one function of each, and prints what independent
 *    arithmetic says it must; the same text type-checks under `tsc --strict` (the repository's typescript);
 *  - `npx mil --help`, `mil golden emit` + `mil golden verify` of one case on wasm-simd run from dist/ with no
 *    tsx installed; bad usage exits 2.
 * bin/mil.js alone (no build, no sources beside it) exits 6 with what to do.
 * Cost, measured here on 2 cores shared with other jobs: 90 s wall when they were quiet, 195–231 s under load,
 * 45 s user CPU. Under load: the pack (a 34 MB tarball, the build included) ~45 s, the install of the run-time
 * dependencies (~300 MB with webgpu's and gpu.js's binaries) from npm's cache ~85 s, tsc --strict over the
 * consumer and the library's declarations 20–50 s (7 s CPU), the CLI runs ~20 s.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROPERTY_OPS } from '../lib/conform/index.js';
import { tmpFolder } from './tmp.js';

const ROOT = join(import.meta.dirname, '..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, string | { types: string; import: string }>;
  bin: Record<string, string>;
};

const run = (cmd: string, args: string[], cwd: string, timeout = 120_000): SpawnSyncReturns<string> =>
  spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, MIL_DIST: undefined } });
const ok = (r: SpawnSyncReturns<string>, what: string) => {
  if (r.status !== 0) throw new Error(`${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
};

/** The README's library snippet: the fenced block after the marker. */
function readmeSnippet(): string {
  const md = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const block = /<!-- spec\/package\.spec\.ts: consumer\.mjs -->\n```js\n([\s\S]*?)```/.exec(md)?.[1];
  if (!block) throw new Error('README.md has no library snippet after <!-- spec/package.spec.ts: consumer.mjs -->');
  return block;
}

describe('bin/mil.js', () => {
  it('with neither a build nor the sources beside it, exits 6 (an environment failure) saying what to do', () => {
    const dir = tmpFolder('bin');
    ok(run('mkdir', ['-p', join(dir, 'bin')], dir), 'mkdir');
    copyFileSync(join(ROOT, 'bin', 'mil.js'), join(dir, 'bin', 'mil.js'));
    const r = run(process.execPath, [join(dir, 'bin', 'mil.js'), '--help'], dir);
    expect(r.stderr).toMatch(
      /^mil: no build at .*dist\/lib\/cli\/main\.js and no tsx to run the sources: run `npm run build`/,
    );
    expect(r.status).toBe(6);
  });
});

const dir = tmpFolder('package'); // at module level: removed after the file (a describe's beforeAll would count as a test)
let app: string; // the consumer's folder, with node_modules/mamba-in-llama installed from the tarball
let packed: string[]; // the tarball's file list

describe('the package installed from its packed tarball', () => {
  beforeAll(() => {
    const pack = ok(
      run('npm', ['pack', '--json', '--pack-destination', dir, '--prefer-offline'], ROOT, 300_000),
      'npm pack',
    );
    const info = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    packed = info[0].files.map((f) => f.path);
    app = join(dir, 'app');
    ok(run('mkdir', ['-p', app], dir), 'mkdir');
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    ok(
      run(
        'npm',
        ['install', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', join(dir, info[0].filename)],
        app,
        400_000,
      ),
      'npm install',
    );
  }, 600_000);

  describe('the packed tarball', () => {
    it('holds every file the exports map and bin name, the run-time files, and no .ts sources', () => {
      const targets = Object.values(PKG.exports).flatMap((e) => (typeof e === 'string' ? [e] : [e.types, e.import]));
      for (const t of [...targets, ...Object.values(PKG.bin)]) expect(packed).toContain(t.replace(/^\.\//, ''));
      for (const f of ['asm/gemm.wasm', 'asm/gemm-fma.wasm', 'models/tokenizer.json', 'golden/kernels.json'])
        expect(packed).toContain(f);
      expect(packed.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
      expect(packed.filter((f) => /^(spec|bench|scripts|examples|web)\//.test(f))).toEqual([]);
    });

    it('installs without dev dependencies: no tsx, no typescript', () => {
      const nm = join(app, 'node_modules');
      expect(existsSync(join(nm, PKG.name, 'dist', 'lib', 'index.js'))).toBe(true);
      expect(existsSync(join(nm, 'tsx'))).toBe(false);
      expect(existsSync(join(nm, 'typescript'))).toBe(false);
    });
  });

  describe("the README's library snippet, from the installed package", () => {
    it('runs under plain node: every entry imports, one function of each gives what the arithmetic says', () => {
      writeFileSync(join(app, 'consumer.mjs'), readmeSnippet());
      const r = ok(run(process.execPath, ['consumer.mjs'], app), 'node consumer.mjs');
      const lines = Object.fromEntries(
        r.stdout
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]),
      );
      // [[1,2],[3,4]]·[[0,1],[1,0]] swaps the columns
      expect(lines.matmul).toBe('[ 2, 1, 4, 3 ]');
      // A = 0, Δ = B = C = 1: h_t = h_{t−1} + u_t and y_t = h_t, the running sum of 1, 2, 3
      expect(lines.selectiveScan).toBe('[ 1, 3, 6 ]');
      // (batch 1, 3 tokens, the draft's vocabulary as its config.json states it)
      const vocab = (
        JSON.parse(readFileSync(join(ROOT, 'models', 'draft-small', 'config.json'), 'utf8')) as { vocab_size: number }
      ).vocab_size;
      expect(lines.forward).toBe(`[ 1, 3, ${vocab} ]`);
      // argmax of row 0 is 2 = d_1: accepted; argmax of row 1 is 1 ≠ d_2 = 0: emitted instead, and the round ends
      expect(lines.acceptGreedy).toBe('[ 2, 1 ]');
      expect(lines.properties).toBe(String(PROPERTY_OPS.length));
      const golden = JSON.parse(readFileSync(join(ROOT, 'golden', 'kernels.json'), 'utf8')) as { cases: unknown[] };
      expect(lines.golden).toBe(String(golden.cases.length));
      expect(lines.cosineLr).toBe('0.001'); // the end of warmup: the peak rate
    }, 60_000);

    it('type-checks under tsc --strict against the installed declarations', () => {
      copyFileSync(join(app, 'consumer.mjs'), join(app, 'consumer.mts'));
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const args = ['--strict', '--noEmit', '--module', 'nodenext', '--moduleResolution', 'nodenext'];
      args.push('--target', 'es2022', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'));
      // beside it, a file with one planted type error: the only error reported (the check is not vacuous)
      writeFileSync(
        join(app, 'bad.mts'),
        "import { getOps } from 'mamba-in-llama';\nexport const n: number = getOps;\n",
      );
      const r = run(process.execPath, [tsc, ...args, 'consumer.mts', 'bad.mts'], app, 300_000);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim().split('\n')).toEqual([
        expect.stringMatching(/^bad\.mts\(2,14\): error TS2322: Type .* is not assignable to type 'number'/),
      ]);
      expect(r.status).toBe(2); // tsc: errors found, outputs skipped
    }, 300_000);
  });

  describe('the mil command from the installed package', () => {
    const mil = (...args: string[]) => run('npx', ['--no-install', 'mil', ...args], app);

    it('--help exits 0 with the usage', () => {
      const r = mil('--help');
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^usage:\n {2}mil demo/);
    });

    it('golden emit + golden verify of one case on wasm-simd exit 0; bad usage exits 2', () => {
      const g = join(app, 'case');
      expect(mil('golden', 'emit', '--op', 'selective_scan', '--seed', '3', '--out', g).status).toBe(0);
      const r = mil('golden', 'verify', g, '--backend', 'wasm-simd');
      expect(r.stdout).toMatch(/1 passed, 0 failed, 0 unsupported/);
      expect(r.status).toBe(0);
      const bad = mil('golden', 'verify', join(app, 'nowhere'));
      expect(bad.stderr).toMatch(/nowhere/);
      expect(bad.status).toBe(2);
      expect(mil('golden', 'verify', g, '--backend', 'abacus').status).toBe(2);
    }, 60_000);
  });
});
