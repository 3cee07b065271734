/**
 * The one writer (lib/io/writer.ts): whatever fails — any system call, a short write, a full disk, a kill at
 * any moment, a second writer — the target is its old version or the complete new one, and nothing is left
 * beside it. Checked on the two writes users care most about: a converted model folder (`saveModel`, the
 * output of `mil convert`) and a golden folder (`emitGolden`, which rewrites files inside an existing folder).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  IoError,
  OutputLockedError,
  REAL_WRITER_FS,
  checkOutput,
  recoverInterruptedSwap,
  setWriterFsForTesting,
  writeFile,
  writeFolder,
  writeSet,
  type WriterFs,
} from '../lib/io/writer.js';
import { convert, saveModel } from '../lib/model/convert.js';
import { loadModel } from '../lib/model/load.js';
import { randomLlama } from '../lib/model/random.js';
import { emitGolden } from '../lib/golden/emit.js';
import { ArgumentError } from '../lib/errors.js';
import { tmpFolder } from './tmp.js';
import { snapshot } from './cli.js';
import { Trainer } from '../lib/train/trainer.js';

const MIL = join(import.meta.dirname, '..', 'bin', 'mil.js');

/** Entries of `parent` other than `keep`: temporaries, backups and locks the writer must not leave. */
const leftovers = (parent: string, keep: string[]) => readdirSync(parent).filter((e) => !keep.includes(e));

/** A file system that fails its `at`-th call (counting every call), the way `mode` says. */
function faulty(at: number, mode: 'EIO' | 'ENOSPC' | 'no-progress'): { fs: WriterFs; calls: () => number } {
  let n = 0;
  const real = { ...realFs() };
  const hit = (name: string) => {
    n++;
    if (n !== at) return false;
    if (mode === 'no-progress' && name === 'writeSync') return true;
    const e = new Error(`injected ${mode} in ${name}`) as NodeJS.ErrnoException;
    e.code = mode === 'no-progress' ? 'EIO' : mode;
    throw e;
  };
  const fs: WriterFs = {
    openSync: (p, f, m) => (hit('openSync'), real.openSync(p, f, m)),
    writeSync: (fd, b, o, l) => (hit('writeSync') ? 0 : real.writeSync(fd, b, o, l)),
    fsyncSync: (fd) => (hit('fsyncSync'), real.fsyncSync(fd)),
    closeSync: (fd) => (hit('closeSync'), real.closeSync(fd)),
    renameSync: (a, b) => (hit('renameSync'), real.renameSync(a, b)),
    mkdirSync: (p) => (hit('mkdirSync'), real.mkdirSync(p)),
    linkSync: (a, b) => (hit('linkSync'), real.linkSync(a, b)),
  };
  return { fs, calls: () => n };
}

const realFs = (): WriterFs => REAL_WRITER_FS;

afterEach(() => setWriterFsForTesting());

const teacher = randomLlama({ vocab: 64, hidden: 32, intermediate: 64, layers: 4, heads: 4, kvHeads: 2 }, 11);
const oldModel = convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 });
const newModel = convert(teacher, { variant: 'mamba1', attentionFraction: 0.25, seed: 2 });

describe('writer: fault injection at every system call', () => {
  for (const mode of ['EIO', 'ENOSPC', 'no-progress'] as const) {
    it(`saveModel over an existing model (new one sharded): every call failing with ${mode} leaves old or new, complete, and nothing beside it`, () => {
      const parent = tmpFolder('writer');
      const target = join(parent, 'model');
      saveModel(target, oldModel);
      const oldSnap = snapshot(target);
      const ref = join(parent, 'ref');
      saveModel(ref, newModel, { shardBytes: 20000 });
      const newSnap = snapshot(ref);
      let sawOld = 0;
      let sawNew = 0;
      let steps = 0;
      let failures = 0;
      for (let at = 1; ; at++) {
        const f = faulty(at, mode);
        setWriterFsForTesting(f.fs);
        let err: unknown;
        try {
          saveModel(target, newModel, { shardBytes: 20000 });
        } catch (e) {
          err = e;
        }
        setWriterFsForTesting();
        const reached = f.calls() >= at;
        // a failed call is an IoError — or harmless (closing the lock file) and the write completes
        if (err !== undefined) expect(err, `call ${at}`).toBeInstanceOf(IoError);
        const snap = snapshot(target);
        const isOld = JSON.stringify(snap) === JSON.stringify(oldSnap);
        const isNew = JSON.stringify(snap) === JSON.stringify(newSnap);
        expect(isOld || isNew, `call ${at}: the folder is neither the old nor the new model`).toBe(true);
        if (err === undefined) expect(isNew, `call ${at}: no error, so the new model`).toBe(true);
        if (err !== undefined) failures++;
        expect(leftovers(parent, ['model', 'ref']), `call ${at}: leftovers`).toEqual([]);
        loadModel(target); // loads, whichever it is
        if (isOld) sawOld++;
        else sawNew++;
        if (!reached) break; // this run made fewer calls than `at`: every call has been failed once
        steps++;
        if (isNew) saveModel(target, oldModel); // reset for the next injection point
      }
      expect(steps).toBeGreaterThan(15); // lock, staging, three shards, configs, fsyncs, renames
      expect(failures).toBeGreaterThan(steps / 2);
      expect(sawOld).toBeGreaterThan(10);
      expect(sawNew).toBeGreaterThan(0);
    });
  }

  it('emitGolden into an existing golden folder: every failing call leaves the old folder or the new one, other files untouched', async () => {
    const parent = tmpFolder('writer');
    const target = join(parent, 'g');
    await emitGolden('multistep', 1, { dim: 8, steps: 3, recompute: 2 }, target);
    writeFileSync(join(target, 'NOTES.txt'), 'a file of the user, not ours\n');
    cpSync(target, join(parent, 'orig'), { recursive: true });
    const oldSnap = snapshot(target);
    let steps = 0;
    for (let at = 1; ; at++) {
      const f = faulty(at, 'EIO');
      setWriterFsForTesting(f.fs);
      let err: unknown;
      try {
        await emitGolden('causal_conv1d', 2, { dim: 6, len: 9 }, target);
      } catch (e) {
        err = e;
      }
      setWriterFsForTesting();
      const reached = f.calls() >= at;
      if (err !== undefined) expect(err).toBeInstanceOf(IoError);
      const snap = snapshot(target);
      expect(snap['NOTES.txt']).toBe(oldSnap['NOTES.txt']);
      const same = JSON.stringify(snap) === JSON.stringify(oldSnap);
      if (err === undefined) expect(same).toBe(false);
      if (!same) {
        // complete new version: both cases present and verifiable
        const j = JSON.parse(readFileSync(join(target, 'kernels.json'), 'utf8'));
        expect(j.cases.map((c: { name: string }) => c.name).sort()).toEqual(['causal_conv1d_s2', 'multistep_s1']);
      }
      expect(leftovers(parent, ['g', 'orig'])).toEqual([]);
      if (!reached) break;
      steps++;
      rmSync(target, { recursive: true });
      cpSync(join(parent, 'orig'), target, { recursive: true }); // back to the old folder for the next point
    }
    expect(steps).toBeGreaterThan(8);
  });

  it('a training checkpoint saved over the previous one: every failing call leaves the old or the new checkpoint, and it resumes', async () => {
    const parent = tmpFolder('writer');
    const target = join(parent, 'ckpt');
    const tokens = Array.from({ length: 120 }, (_, i) => (i * 7) % 64);
    const t = Trainer.create(teacher, tokens, {
      objective: 'lm',
      optimizer: { kind: 'adam', lr: 0.01, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 0 },
      totalSteps: 4,
      warmupSteps: 0,
      batch: 1,
      seqLen: 8,
      seed: 1,
      train: 'all',
    });
    await t.trainStep();
    t.save(target);
    const oldSnap = snapshot(target);
    cpSync(target, join(parent, 'ckpt-old'), { recursive: true });
    await t.trainStep();
    let steps = 0;
    for (let at = 1; ; at++) {
      const f = faulty(at, 'ENOSPC');
      setWriterFsForTesting(f.fs);
      let err: unknown;
      try {
        t.save(target);
      } catch (e) {
        err = e;
      }
      setWriterFsForTesting();
      if (err !== undefined) expect(err).toBeInstanceOf(IoError);
      const same = JSON.stringify(snapshot(target)) === JSON.stringify(oldSnap);
      if (err === undefined) expect(same).toBe(false);
      expect(Trainer.resume(target, tokens).step).toBe(same ? 1 : 2);
      expect(leftovers(parent, ['ckpt', 'ckpt-old'])).toEqual([]);
      if (f.calls() < at) break;
      steps++;
      if (!same) {
        rmSync(target, { recursive: true });
        cpSync(join(parent, 'ckpt-old'), target, { recursive: true });
      }
    }
    expect(steps).toBeGreaterThan(8);
  });

  it('short writes (7 bytes per write call) still produce the complete file', () => {
    const parent = tmpFolder('writer');
    const r = realFs();
    setWriterFsForTesting({ ...r, writeSync: (fd, b, o, l) => r.writeSync(fd, b, o, Math.min(l, 7)) });
    saveModel(join(parent, 'short'), oldModel);
    setWriterFsForTesting();
    saveModel(join(parent, 'normal'), oldModel);
    expect(snapshot(join(parent, 'short'))).toEqual(snapshot(join(parent, 'normal')));
  });
  it("writeSet (a folder and a file): a failure while staging leaves both old; only a failed swap of the file, after the folder's, leaves the folder new beside the old file; nothing beside them", () => {
    const parent = tmpFolder('writer');
    const folder = join(parent, 'set');
    const file = join(parent, 'set.md');
    const write = (v: string) =>
      writeSet([
        { target: folder, build: (s) => (s.writeFile('a.json', `{"v": "${v}"}`), s.writeFile('b.svg', v.repeat(50))) },
        { target: file, data: `page of ${v}\n` },
      ]);
    /** write('new'): its error, undefined if none */
    const attempt = (): unknown => {
      try {
        write('new');
      } catch (e) {
        return e;
      }
    };
    const state = () => [readFileSync(join(folder, 'a.json'), 'utf8'), readFileSync(file, 'utf8')];
    write('old');
    const OLD = state();
    write('new');
    const NEW = state();
    write('old');
    let sawMix = 0;
    for (let at = 1; ; at++) {
      const f = faulty(at, 'EIO');
      let renames = 0;
      let folderIn = false; // the folder's new version renamed into place
      const named = Object.entries(f.fs).map(([name, g]: [string, (...a: unknown[]) => unknown]) => [
        name,
        (...a: unknown[]) => {
          const r = g(...a);
          if (name === 'renameSync') renames++;
          if (name === 'renameSync' && a[1] === folder && String(a[0]).includes('.set.mil-tmp-')) folderIn = true;
          return r;
        },
      ]);
      setWriterFsForTesting(Object.fromEntries(named) as WriterFs);
      const err = attempt();
      setWriterFsForTesting();
      if (err !== undefined) expect(err, `call ${at}`).toBeInstanceOf(IoError);
      const s = state();
      const what = `call ${at} failed (${renames} renames made)`;
      if (!folderIn && err !== undefined)
        expect(s, `${what}: a failure before the folder's swap, so both old`).toEqual(OLD);
      else if (err === undefined) expect(s, what).toEqual(NEW);
      else if (folderIn) {
        // the folder's swap was done (target aside, new one in place), then a call failed: before the file's swap
        // (the folder new beside the old file) or after it (its parent's fsync: both new)
        expect([JSON.stringify(NEW), JSON.stringify([NEW[0], OLD[1]])], what).toContain(JSON.stringify(s));
        if (s[1] === OLD[1]) sawMix++;
      } else expect([JSON.stringify(OLD), JSON.stringify(NEW)], what).toContain(JSON.stringify(s));
      recoverInterruptedSwap(folder);
      recoverInterruptedSwap(file);
      expect(readdirSync(parent).sort(), `${what}: leftovers`).toEqual(['set', 'set.md']);
      if (f.calls() < at) break;
      write('old');
    }
    expect(sawMix, "a failed swap of the file after the folder's").toBeGreaterThan(0);
    // a full disk after any number of bytes (every 29th, and all): both old, or both new when all fit
    const disk = (budget: number) => {
      let used = 0;
      const r = realFs();
      setWriterFsForTesting({
        ...r,
        writeSync: (fd, b, o, l) => {
          const n = Math.min(l, budget - used);
          if (n <= 0) throw Object.assign(new Error('injected ENOSPC'), { code: 'ENOSPC' });
          used += n;
          return r.writeSync(fd, b, o, n);
        },
      });
      return () => used;
    };
    const used = disk(Infinity);
    write('new');
    const total = used();
    setWriterFsForTesting();
    for (const budget of [...Array(Math.ceil(total / 29)).keys()].map((k) => 29 * k).concat([total - 1, total])) {
      write('old');
      disk(budget);
      const err = attempt();
      setWriterFsForTesting();
      if (budget === total) expect(err).toBe(undefined);
      if (err === undefined) expect(state()).toEqual(NEW);
      else expect(state(), `disk full after ${budget} of ${total} bytes`).toEqual(OLD);
      expect(readdirSync(parent).sort()).toEqual(['set', 'set.md']);
    }
  });
});

describe('writer: kills, full disks, races, bad targets', () => {
  it('a convert killed at random moments (12 kills, half of them during the write) always leaves a folder that loads as the old or the new model', async () => {
    const parent = tmpFolder('kill');
    const tdir = join(parent, 'teacher');
    saveModel(tdir, randomLlama({ vocab: 2048, hidden: 192, intermediate: 512, layers: 4, heads: 4, kvHeads: 2 }, 5));
    const out = join(parent, 'out');
    const run = (seed: number) =>
      spawnSync(
        'node',
        [MIL, 'convert', '--teacher', tdir, '--out', out, '--seed', String(seed), '--variant', 'mamba2'],
        { encoding: 'utf8' },
      );
    expect(run(1).status).toBe(0);
    const s1 = snapshot(out);
    expect(run(2).status).toBe(0);
    const s2 = snapshot(out);
    expect(s1).not.toEqual(s2);
    let killedDuringWrite = 0;
    for (let i = 0; i < 12; i++) {
      const child = spawn('node', [
        MIL,
        'convert',
        '--teacher',
        tdir,
        '--out',
        out,
        '--seed',
        String(1 + (i % 2)),
        '--variant',
        'mamba2',
      ]);
      const duringWrite = i % 2 === 0;
      await new Promise<void>((res) => {
        let done = false;
        const kill = () => {
          if (!done) child.kill('SIGKILL');
        };
        if (duringWrite) {
          child.stderr.on('data', (d: Buffer) => {
            if (d.toString().includes('writing')) {
              killedDuringWrite++;
              setTimeout(kill, (i * 7) % 40); // 0 … 40 ms into the write
            }
          });
        } else setTimeout(kill, 200 + i * 90);
        child.on('exit', () => {
          done = true;
          res();
        });
      });
      loadModel(out); // restores an interrupted swap and removes stale temporaries
      const s = snapshot(out);
      expect(JSON.stringify(s) === JSON.stringify(s1) || JSON.stringify(s) === JSON.stringify(s2), `kill ${i}`).toBe(
        true,
      );
      expect(leftovers(parent, ['teacher', 'out']), `kill ${i}`).toEqual([]);
    }
    expect(killedDuringWrite).toBeGreaterThanOrEqual(5);
  });

  it('a full file system (a real 1 MiB tmpfs): exit 6, the old model intact, nothing left behind; read-only: exit 6 before any work', (ctx) => {
    const mnt = tmpFolder('tmpfs');
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { encoding: 'utf8' });
    if (m.status !== 0) {
      ctx.skip(`cannot mount a tmpfs here (${(m.stderr || m.error?.message || '').trim()})`);
      return;
    }
    try {
      const small = randomLlama({ vocab: 64, hidden: 32, intermediate: 64, layers: 2, heads: 2, kvHeads: 1 }, 3);
      saveModel(join(mnt, 'teacher'), small);
      const out = join(mnt, 'out');
      expect(
        spawnSync('node', [MIL, 'convert', '--teacher', join(mnt, 'teacher'), '--out', out], { encoding: 'utf8' })
          .status,
      ).toBe(0);
      const before = snapshot(out);
      const free = Number(
        spawnSync('df', ['--output=avail', '-B1', mnt], { encoding: 'utf8' }).stdout.trim().split('\n')[1],
      );
      writeFileSync(join(mnt, 'filler'), Buffer.alloc(Math.max(0, free - 60_000)));
      const r = spawnSync('node', [MIL, 'convert', '--teacher', join(mnt, 'teacher'), '--out', out, '--seed', '9'], {
        encoding: 'utf8',
      });
      expect(r.status).toBe(6);
      expect(r.stderr).toMatch(/IoError: .* (write|fsync|open) failed \(ENOSPC\)/);
      expect(snapshot(out)).toEqual(before);
      expect(leftovers(mnt, ['teacher', 'out', 'filler'])).toEqual([]);
      // the same file system remounted read-only: refused before any work, exit 6
      expect(spawnSync('mount', ['-o', 'remount,ro', mnt]).status).toBe(0);
      const ro = spawnSync('node', [MIL, 'convert', '--teacher', join(mnt, 'teacher'), '--out', join(mnt, 'out2')], {
        encoding: 'utf8',
      });
      expect(ro.status).toBe(6);
      expect(ro.stderr).toMatch(/IoError: .*\((EROFS|EACCES)\)/);
      expect(ro.stderr).not.toMatch(/converting/);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('a second writer to the same target fails with OutputLockedError; a stale lock of a dead process is taken over', () => {
    const parent = tmpFolder('lock');
    const target = join(parent, 'x');
    const sleeper = spawn('sleep', ['30']);
    try {
      writeFileSync(join(parent, '.x.mil-lock'), `${sleeper.pid} test\n`);
      expect(() => writeFolder(target, (s) => s.writeFile('a', 'a'))).toThrow(OutputLockedError);
      expect(() => checkOutput(target, 'folder')).toThrow(/being written by another process \(pid \d+/);
      expect(existsSync(target)).toBe(false);
    } finally {
      sleeper.kill('SIGKILL');
    }
    const dead = spawnSync('true').pid;
    writeFileSync(join(parent, '.x.mil-lock'), `${dead} test\n`);
    writeFolder(target, (s) => s.writeFile('a', 'a'));
    expect(readFileSync(join(target, 'a'), 'utf8')).toBe('a');
    expect(leftovers(parent, ['x'])).toEqual([]);
    // a write inside a write to the same target is refused too
    expect(() => writeFolder(target, () => writeFolder(target, () => {}))).toThrow(/this process already writes it/);
  });

  it('two concurrent converts to one --out: one wins, one is refused or both complete in turn; never a mix', async () => {
    const parent = tmpFolder('race');
    const tdir = join(parent, 'teacher');
    saveModel(tdir, randomLlama({ vocab: 512, hidden: 128, intermediate: 256, layers: 4, heads: 4, kvHeads: 2 }, 8));
    const out = join(parent, 'out');
    const go = (seed: number) =>
      new Promise<number>((res) =>
        spawn('node', [MIL, 'convert', '--teacher', tdir, '--out', out, '--seed', String(seed)]).on('exit', (c) =>
          res(c ?? -1),
        ),
      );
    const codes = await Promise.all([go(1), go(2)]);
    for (const c of codes) expect([0, 4]).toContain(c); // 4: refused, the output locked by the other run
    expect(codes).toContain(0);
    const s = snapshot(out);
    const ref = join(parent, 'ref');
    const want = [1, 2].map((seed) => {
      spawnSync('node', [MIL, 'convert', '--teacher', tdir, '--out', ref, '--seed', String(seed)]);
      return JSON.stringify(snapshot(ref));
    });
    expect(want).toContain(JSON.stringify(s));
  });

  it('stale temporaries and an interrupted swap (target moved aside, new one not in place) are repaired', () => {
    const parent = tmpFolder('recover');
    const target = join(parent, 'm');
    saveModel(target, oldModel);
    const snap = snapshot(target);
    // simulate a writer killed between its two renames, with a half-staged folder beside
    const dead = spawnSync('true').pid;
    spawnSync('mv', [target, join(parent, `.m.mil-old-${dead}-abcd`)]);
    mkdirSync(join(parent, `.m.mil-tmp-${dead}-ef01`));
    writeFileSync(join(parent, `.m.mil-tmp-${dead}-ef01`, 'model.safetensors'), 'half');
    writeFileSync(join(parent, '.m.mil-lock'), `${dead} x\n`);
    expect(existsSync(target)).toBe(false);
    expect(loadModel(target).mamba?.variant).toBe('mamba2');
    expect(snapshot(target)).toEqual(snap);
    expect(leftovers(parent, ['m', '.m.mil-lock'])).toEqual([]);
    saveModel(target, newModel); // the next write takes the stale lock over
    expect(leftovers(parent, ['m'])).toEqual([]);
    expect(recoverInterruptedSwap(target)).toEqual({ restored: false, removed: [] });
  });

  it('refuses, before writing anything: --out equal to or inside --teacher, an existing file, /dev/null, /proc, a read-only folder', () => {
    const parent = tmpFolder('refuse');
    const tdir = join(parent, 'teacher');
    saveModel(tdir, teacher);
    const snap = snapshot(tdir);
    for (const out of [tdir, join(tdir, 'sub'), parent]) {
      const r = spawnSync('node', [MIL, 'convert', '--teacher', tdir, '--out', out], { encoding: 'utf8' });
      expect(r.status, out).toBe(2);
      expect(r.stderr).toMatch(/argument '--out': expected a path apart from --teacher/);
    }
    expect(snapshot(tdir)).toEqual(snap);
    writeFileSync(join(parent, 'file'), 'x');
    const ro = join(parent, 'ro');
    mkdirSync(ro, { mode: 0o555 });
    const cases: Array<[string, RegExp]> = [
      [join(parent, 'file'), /exists and is not a folder/],
      ['/dev/null', /exists and is not a folder/],
      ['/proc/mil-x', /\/proc: access failed|cannot create|ENOENT|EACCES|EROFS/],
      [join(parent, 'file', 'sub'), /a path component is not a folder/],
    ];
    if (process.getuid?.() !== 0) cases.push([join(ro, 'out'), /access failed \(EACCES\)/]);
    for (const [out, msg] of cases) {
      const r = spawnSync('node', [MIL, 'convert', '--teacher', tdir, '--out', out], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, `${out}: ${r.stderr}`).toBe(6);
      expect(r.stderr).toMatch(/IoError/);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/converting/); // refused before any work
    }
    expect(leftovers(parent, ['teacher', 'file', 'ro'])).toEqual([]);
    expect(() => writeFile(join(tdir, 'config.json'), 'x', { inputs: [{ option: 'teacher', path: tdir }] })).toThrow(
      ArgumentError,
    );
  });

  it('writes of any size are chunked below the 2 GiB write(2) limit (a 2.5 GiB buffer and more are written in ≤ 1 GiB calls)', () => {
    const r = realFs();
    const sizes: number[] = [];
    let bytes = 0;
    const parent = tmpFolder('big');
    const target = join(parent, 'big.bin');
    // count the data file's writes (not the lock file's), writing nothing
    setWriterFsForTesting({
      ...r,
      openSync: (p, f, m) => r.openSync(p, f, m),
      writeSync: (fd, b, o, l) => (l > 1000 ? (sizes.push(l), (bytes += l), l) : r.writeSync(fd, b, o, l)),
    });
    const huge = new Uint8Array(2.5 * 2 ** 30); // one 2.5 GiB buffer (zero pages: no memory is touched)
    writeFile(target, {
      *[Symbol.iterator]() {
        yield huge;
        yield huge.subarray(0, 2 ** 29);
      },
    });
    setWriterFsForTesting();
    expect(bytes).toBe(3 * 2 ** 30);
    expect(sizes).toEqual([2 ** 30, 2 ** 30, 2 ** 29, 2 ** 29]);
    expect(statSync(target).size).toBe(0); // nothing reached the disk: the shim swallowed it
  });
});
