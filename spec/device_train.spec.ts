/**
 * A training run cut to the GPU machine's commands (issue #25: each command at most 10 minutes, what comes back at
 * most 8 files of 16 MiB), at tiny scale on the CPU:
 *   - `--max-minutes M` (lib/train/job.ts stopAt): the run stops at the first step that ends past M minutes after
 *     the command started, OUT.checkpoint saved and OUT not written, exit 0 with a line naming the step; the same
 *     command again goes on from there; the model it ends with is the uninterrupted run's, bit for bit (F32), and
 *     its history the same steps with the same losses. `--max-minutes 0` stops after exactly one step each time;
 *   - with --stepwise, a stage that an earlier command finished is kept (its folder's training.json names the same
 *     stage, fraction, variant, init, teacher, seed and data; its weights F32, what the next stage starts from in
 *     one command too), so a run cut into commands ends;
 *   - `--max-shard-size` shards the final weights: more than one file, none holding more tensor bytes than asked;
 *   - scripts/device_train.sh: `pack` then `unpack` give back a built corpus with the same token ids in every part,
 *     the same manifest and tokenizer; `run` gives mil the corpus, --backend webgpu, MAX_MINUTES, 16 MiB shards and
 *     the output under RUNS, says `stopped at step S of T` and sends nothing back while the run is cut, and once it
 *     is whole copies back its config (a hybrid: its mamba_config and mil_config too), tokenizer, training record and weights
 *     (shards and index) alone, the small files in one tar: ≤ 8 files.
 *     `arms` runs the small plan's own commands by name (scripts/commands.ts smallPaperRuns; TOKENS in place of
 *     --tokens, what is left of BUDGET_MINUTES as --max-minutes), evaluates each whole run on the test split and
 *     Brown (a run already evaluated is not again), stops the list at a run cut by the time limit, and sends the
 *     records back as one tar; a name outside the plan exits 2. Mutations: no stop after a cut run, TOKENS ignored.
 * Mutations tried: the time check left out of the job's loop (the run trains to the end: OUT written on the first
 * invocation) fails the first test; shardBytes not passed to modelFiles (one file) fails it too; `pack` taking the
 * train shards alone fails the pack test; finishedStage never finding the stage (stage 1 trained again, stopped
 * again), or stage 2 started from the in-memory float64 stage 1 in one command (its start then differs from the
 * saved one a later command reuses: the checkpoint refused), fail the stepwise test.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../lib/cli/main.js';
import { EXIT } from '../lib/cli/exit.js';
import { loadModel } from '../lib/model/load.js';
import { tmpFolder } from './tmp.js';
import { CORPUS_FORMAT, CORPUS_PARTS, encodeIds, readPart, sha256 } from '../lib/data/ids.js';
import { SHIPPED_TOKENIZER } from '../lib/cli/train_cmds.js';
import { Rng } from './helpers.js';
import { randomLlama } from '../lib/model/random.js';
import { convert, saveModel } from '../lib/model/convert.js';

const ROOT = join(import.meta.dirname, '..');

/** A corpus of 8 documents of 120 words (jsonl). */
function corpus(): string {
  const words = 'the union is strong and the people of the states have made it so by their law'.split(' ');
  const docs = Array.from({ length: 8 }, (_, d) =>
    JSON.stringify({ id: `d${d}`, text: Array.from({ length: 120 }, (_, i) => words[(i * 5 + d) % 16]).join(' ') }),
  );
  return docs.join('\n') + '\n';
}

/** `mil …args`: its exit code and what it printed on stdout. */
async function mil(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out += a.join(' ') + '\n'));
  const err = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    return { code: await main(args), out };
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

/** A built corpus (mil data build's format) of random ids in the shipped tokenizer's vocabulary: 2 train shards. */
function builtCorpus(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const tok = readFileSync(SHIPPED_TOKENIZER);
  writeFileSync(join(dir, 'tokenizer.json'), tok);
  const r = new Rng(4);
  const part = (name: string, sizes: number[]) => ({
    docs: sizes.length,
    textBytes: 0,
    tokens: sizes.reduce((a, b) => a + b, 0),
    shards: sizes.map((n, k) => {
      const ids = Uint16Array.from({ length: n }, () => r.int(0, 2047)); // (n)
      const { raw, gz } = encodeIds(ids);
      const file = `${name}-${String(k).padStart(3, '0')}.u16.gz`;
      writeFileSync(join(dir, file), gz);
      return { file, docs: 1, tokens: n, sha256: sha256(raw), bytes: gz.length };
    }),
  });
  const manifest = {
    format: CORPUS_FORMAT,
    tokenizer: { file: 'tokenizer.json', vocabSize: 2048, sha256: sha256(tok) },
    ids: { dtype: 'uint16', endianness: 'little', compression: 'gzip' },
    parts: { train: part('train', [3000, 1000]), validation: part('validation', [400]), test: part('test', [300]) },
  };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
}

const sh = (args: string[], env: Record<string, string> = {}) =>
  execFileSync('bash', [join(ROOT, 'scripts', 'device_train.sh'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

describe('a training run in commands of limited time (issue #25, the GPU machine)', () => {
  it('--max-minutes 0: one step a command, checkpointed, exit 0; run again it goes on; the end = an uninterrupted run, bit for bit', async () => {
    const dir = tmpFolder('device-train');
    const data = join(dir, 'corpus.jsonl');
    writeFileSync(data, corpus());
    const base = ['train', '--config', 'tiny', '--data', data, '--steps', '4', '--batch', '2', '--len', '8'];
    const rest = ['--eval-tokens', '32', '--engine', 'float64', '--dtype', 'F32', '--quiet', '--save-every', '100'];
    const whole = join(dir, 'whole');
    const cut = join(dir, 'cut');
    expect((await mil([...base, ...rest, '--out', whole])).code).toBe(EXIT.ok);
    for (const step of [1, 2]) {
      const r = await mil([...base, ...rest, '--max-minutes', '0', '--out', cut]);
      expect(r.code).toBe(EXIT.ok);
      expect(r.out).toMatch(
        new RegExp(`stopped at --max-minutes after step ${step} of 4: .*cut\\.checkpoint holds it`),
      );
      expect(existsSync(cut)).toBe(false);
      const t = JSON.parse(readFileSync(join(`${cut}.checkpoint`, 'trainer.json'), 'utf8')) as { step: number };
      expect(t.step).toBe(step);
    }
    // the last command without the limit (it may change on resume), the weights in shards of at most 300 kB (one tensor, the embedding, is 262 kB)
    expect((await mil([...base, ...rest, '--max-shard-size', '300KB', '--out', cut])).code).toBe(EXIT.ok);
    expect(existsSync(`${cut}.checkpoint`)).toBe(false);
    const record = (d: string) =>
      JSON.parse(readFileSync(join(d, 'training.json'), 'utf8')) as {
        resumedFrom?: number;
        history: Array<{ step: number; loss: number; seconds: number }>;
      };
    expect(record(cut).resumedFrom).toBe(2);
    expect(record(cut).history).toEqual(
      record(whole).history.map((h, i) => ({ ...h, seconds: record(cut).history[i]?.seconds })),
    );
    const [a, b] = [loadModel(cut), loadModel(whole)];
    for (const n of b.weights.names())
      expect(Array.from(a.weights.get(n).data), n).toEqual(Array.from(b.weights.get(n).data));
    const shards = readdirSync(cut).filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(1);
    for (const f of shards) {
      const bytes = readFileSync(join(cut, f));
      const header = Number(bytes.readBigUInt64LE(0));
      expect(statSync(join(cut, f)).size - 8 - header, f).toBeLessThanOrEqual(300_000);
    }
  });

  it('--max-minutes with --stepwise: a stage finished by an earlier command is kept, not trained again; the run ends', async () => {
    const dir = tmpFolder('device-stepwise');
    const data = join(dir, 'corpus.jsonl');
    writeFileSync(data, corpus());
    const common = ['--data', data, '--batch', '2', '--len', '8', '--eval-tokens', '32', '--engine', 'float64'];
    const t = join(dir, 't');
    expect((await mil(['train', '--config', 'tiny', ...common, '--steps', '1', '--quiet', '--out', t])).code).toBe(0);
    const out = join(dir, 's');
    const args = ['distill', '--teacher', t, '--stepwise', '0.5,0', '--steps', '2', ...common, '--max-minutes', '0'];
    const said: string[] = [];
    let stage1 = '';
    for (let i = 0; i < 3; i++) {
      const r = await mil([...args, '--quiet', '--out', out]);
      expect(r.code).toBe(EXIT.ok);
      said.push(r.out);
      if (i === 1) stage1 = readFileSync(join(`${out}.stage1`, 'training.json'), 'utf8');
    }
    expect(said[0]).toMatch(/stopped .*after step 1 of 2: .*s\.stage1\.checkpoint/);
    expect(said[1]).toMatch(/stopped .*after step 1 of 2: .*s\.checkpoint/); // stage 1 finished, stage 2 begun
    expect(said[2]).toMatch(/^wrote .*s: validation perplexity/m);
    expect(readFileSync(join(`${out}.stage1`, 'training.json'), 'utf8')).toBe(stage1); // kept, not trained again
    expect(existsSync(join(out, 'config.json'))).toBe(true);
  });

  it('scripts/device_train.sh pack → unpack: the same token ids, manifest and tokenizer (xz of raw ids, gzip again)', () => {
    const dir = tmpFolder('device-pack');
    const corpus = join(dir, 'corpus');
    builtCorpus(corpus);
    const out = sh(['pack', '--corpus', corpus, '--to', join(dir, 'carry')]);
    expect(out).toMatch(/packed .* as .*corpus\.tar\.xz: \d+ bytes/);
    sh(['unpack', '--from', join(dir, 'carry', 'corpus.tar.xz'), '--to', join(dir, 'there')]);
    for (const p of CORPUS_PARTS) expect(readPart(join(dir, 'there'), p), p).toEqual(readPart(corpus, p));
    for (const f of ['manifest.json', 'tokenizer.json'])
      expect(readFileSync(join(dir, 'there', f)).equals(readFileSync(join(corpus, f))), f).toBe(true);
    expect(readdirSync(join(dir, 'there')).filter((f) => f.endsWith('.u16'))).toEqual([]);
  });

  // `mil` here is a stand-in that records its arguments and plays a stopped or a finished run (the real one, through
  // bin/mil.js on webgpu, took 28 s on 2 cores for the two commands: the time-limit stop itself is the test above)
  it('scripts/device_train.sh run: mil given the corpus, webgpu, the time limit, 16 MiB shards; stopped: nothing back; done: the model back in OUT', () => {
    const dir = tmpFolder('device-run');
    const fake = join(dir, 'mil.sh');
    writeFileSync(
      fake,
      [
        'echo "$@" > "$RUNS/args"',
        'out=${@: -1}',
        'if [ -f "$RUNS/finish" ]; then mkdir -p "$out"; for f in config.json mamba_config.json mil_config.json tokenizer.json training.json loss.svg .mil-output.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors model.safetensors.index.json; do echo x > "$out/$f"; done; echo "wrote $out"',
        'else echo "stopped at --max-minutes after step 3 of 9: $out.checkpoint holds it, $out is not written yet; run the same command again to go on"; fi',
      ].join('\n'),
    );
    mkdirSync(join(dir, 'corpus'));
    writeFileSync(join(dir, 'corpus', 'manifest.json'), '{}');
    const env = {
      MIL: `bash ${fake}`,
      CORPUS: join(dir, 'corpus'),
      RUNS: join(dir, 'runs'),
      OUT: join(dir, 'out'),
      MAX_MINUTES: '7.5',
    };
    const args = ['run', 't', 'train', '--config', 'teacher-20m', '--seed', '0'];
    expect(sh(args, env)).toMatch(/stopped at step 3 of 9: send the same command again now/);
    expect(readFileSync(join(dir, 'runs', 'args'), 'utf8').trim()).toBe(
      `train --config teacher-20m --seed 0 --data ${join(dir, 'corpus')} --backend webgpu --max-minutes 7.5 --max-shard-size 16MiB --quiet --out ${join(dir, 'runs', 't')}`,
    );
    expect(existsSync(join(dir, 'out'))).toBe(false);
    writeFileSync(join(dir, 'runs', 'finish'), '');
    expect(sh(args, env)).toMatch(/done: 4 files in .*out\/t/);
    // what comes back: at most 8 files (no loss.svg, no writer's marker): the weights, and the small files in one tar
    // (a hybrid's two configs with them: a 3-shard hybrid would be 9 files one by one)
    const back = join(dir, 'out', 't');
    expect(readdirSync(back).sort()).toEqual([
      'meta.tar',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
    ]);
    const listed = execFileSync('tar', ['tf', join(back, 'meta.tar')], { encoding: 'utf8' })
      .trim()
      .split('\n');
    expect(listed.sort()).toEqual([
      'config.json',
      'mamba_config.json',
      'mil_config.json',
      'tokenizer.json',
      'training.json',
    ]);
  });

  it("scripts/device_train.sh arms: the plan's own commands in order (TOKENS in place of the plan's budget, a multiple kept; the budget as --max-minutes), each whole run evaluated on test and Brown, a cut run stops the rest; the records back as one tar", () => {
    const dir = tmpFolder('device-arms');
    const runs = join(dir, 'runs');
    const fake = join(dir, 'mil.sh');
    // a fake mil: eval writes its --out; a training run finishes where RUNS/finish exists, else stops checkpointed
    writeFileSync(
      fake,
      [
        'echo "$@" >> "$RUNS/calls"',
        'if [ "$1" = eval ]; then out=${@: -1}; echo \'{"ppl": 2}\' > "$out"; exit 0; fi',
        'if [ "$1" = data ]; then out=${@: -1}; mkdir -p "$out"; echo "{}" > "$out/retrieval.jsonl"; exit 0; fi',
        'if [ "$1" = passkey ]; then out=${@: -1}; mkdir -p "$out"; echo "{}" > "$out/passkey.json"; exit 0; fi',
        'out=; prev=; for a in "$@"; do [ "$prev" = --out ] && out=$a; prev=$a; done',
        'if [ -f "$RUNS/finish" ]; then mkdir -p "$out"; echo "{}" > "$out/config.json"; echo "{}" > "$out/training.json"; echo "wrote $out"',
        'else echo "stopped at --max-minutes after step 3 of 9: $out.checkpoint holds it"; fi',
      ].join('\n'),
    );
    mkdirSync(join(dir, 'corpus'));
    writeFileSync(join(dir, 'corpus', 'manifest.json'), '{}');
    mkdirSync(join(runs, 'teacher'), { recursive: true });
    writeFileSync(join(runs, 'teacher', 'config.json'), '{}');
    writeFileSync(join(dir, 'brown.jsonl'), '{}\n');
    mkdirSync(join(dir, 'instruct'));
    writeFileSync(join(dir, 'instruct', 'sft.jsonl'), '{}\n');
    const env = {
      INSTRUCT: join(dir, 'instruct'),
      RETRIEVAL: join(dir, 'retrieval'),
      MIL: `bash ${fake}`,
      NODE: 'node --import tsx',
      PLAN_JS: join(ROOT, 'scripts', 'commands.ts'),
      CORPUS: join(dir, 'corpus'),
      RUNS: runs,
      OUT: join(dir, 'out'),
      BROWN: join(dir, 'brown.jsonl'),
      TOKENS: '1024',
      BUDGET_MINUTES: '9',
    };
    mkdirSync(join(dir, 'out'));
    const args = ['arms', 'teacher', 'mamba2-50', 'mamba2-0'];
    expect(sh(args, env)).toMatch(/mamba2-50 stopped checkpointed: send the same command again/);
    const calls = () => readFileSync(join(runs, 'calls'), 'utf8').trim().split('\n');
    const c1 = calls();
    // the teacher (already whole) evaluated on test, Brown and (the base of teacher-sft, INSTRUCT_EVAL) the
    // instruction set, its passkey test (PASSKEY_EVAL), then mamba2-50 as the plan has it, then nothing (cut)
    expect(c1.length).toBe(5);
    expect(c1[0]).toMatch(
      new RegExp(
        `^eval --model ${runs}/teacher --data ${dir}/corpus --split test --len 512 --backend webgpu --out ${runs}/teacher.test.json$`,
      ),
    );
    expect(c1[1]).toMatch(
      new RegExp(
        `^eval --model ${runs}/teacher --data ${dir}/brown.jsonl --split test --len 512 --backend webgpu --out ${runs}/teacher.brown.json$`,
      ),
    );
    expect(c1[2]).toBe(
      `eval --model ${runs}/teacher --data ${dir}/instruct/sft.jsonl --split test --len 256 --backend webgpu --out ${runs}/teacher.instruct.json`,
    );
    expect(c1[3]).toBe(
      `passkey --model ${runs}/teacher --data ${dir}/corpus --context 1024 --multiples 1,2,4,8 --depths 0,0.25,0.5,0.75,1 --trials 5 --backend webgpu --out ${runs}/teacher.passkey`,
    );
    expect(c1[4]).toMatch(
      new RegExp(
        `^distill --teacher ${runs}/teacher --data ${dir}/corpus --variant mamba2 --attention 0.5 --tokens 1024 --batch 1 --len 512 --accumulate 16 --lr 1e-3 --seed 0 --backend webgpu --quiet --out ${runs}/mamba2-50 --max-minutes [78]\\.\\d\\d --max-shard-size 16MiB$`,
      ),
    );
    writeFileSync(join(runs, 'finish'), '');
    expect(sh(args, env)).toMatch(/17 files back in records-teacher.tar.xz/);
    const c2 = calls().slice(5);
    // the teacher not evaluated again; both runs made and evaluated
    expect(c2.map((c) => c.split(' ').slice(0, 3).join(' '))).toEqual([
      `distill --teacher ${runs}/teacher`,
      `eval --model ${runs}/mamba2-50`,
      `eval --model ${runs}/mamba2-50`,
      `eval --model ${runs}/mamba2-50`, // the base of SFT/DPO (INSTRUCT_EVAL): the instruction set's held-out answers
      `distill --teacher ${runs}/teacher`,
      `eval --model ${runs}/mamba2-0`,
      `eval --model ${runs}/mamba2-0`,
    ]);
    expect(calls()[8]).toBe(
      `eval --model ${runs}/mamba2-50 --data ${dir}/instruct/sft.jsonl --split test --len 256 --backend webgpu --out ${runs}/mamba2-50.instruct.json`,
    );
    const listed = execFileSync('tar', ['tJf', join(dir, 'out', 'records-teacher.tar.xz')], { encoding: 'utf8' });
    expect(listed.trim().split('\n').sort()).toEqual(
      [
        'teacher/config.json',
        'teacher.test.json',
        'teacher.brown.json',
        'teacher.instruct.json',
        'teacher.passkey/passkey.json',
        'teacher.log',
        'mamba2-50.instruct.json',
      ]
        .concat(
          ['mamba2-50', 'mamba2-0'].flatMap((n) => [
            `${n}/training.json`,
            `${n}/config.json`,
            `${n}.test.json`,
            `${n}.brown.json`,
            `${n}.log`,
          ]),
        )
        .sort(),
    );
    // stages 2/3: sft is checkpointed like a distillation (--max-minutes), dpo keeps no checkpoint and refuses
    // --max-minutes and --max-shard-size (exit 2), so it gets neither
    const n = calls().length;
    sh(['arms', 'mamba2-50-sft', 'mamba2-50-dpo'], env);
    const c3 = calls().slice(n);
    expect(c3.filter((c) => /^(sft|dpo) /.test(c)).map((c) => [c.split(' ')[0], /--max-minutes/.test(c)])).toEqual([
      ['sft', true],
      ['dpo', false],
    ]);
    // the passkey runs: the retrieval curriculum made there first (once), the teacher fine-tuned on it, each
    // evaluated with the passkey test too
    const r0 = calls().length;
    sh(['arms', 'teacher-retrieval', 'mamba2-50-retrieval'], env);
    const cr = calls().slice(r0);
    expect(cr[0]).toBe(`data retrieval --corpus ${dir}/corpus --context 512 --out ${dir}/retrieval`);
    expect(cr[1]).toMatch(
      new RegExp(
        `^sft --model ${runs}/teacher --data ${dir}/retrieval/retrieval.jsonl --tokens 512 --batch 1 --len 512 --accumulate 16 `,
      ),
    );
    expect(cr[2]).toMatch(/^eval --model \S+\/teacher-retrieval --data \S+\/corpus --split test/);
    expect(cr.filter((c) => c.startsWith('passkey ')).map((c) => c.split(' ')[2])).toEqual([
      `${runs}/teacher-retrieval`,
      `${runs}/mamba2-50-retrieval`,
    ]);
    expect(cr.find((c) => c.startsWith('distill '))).toMatch(
      new RegExp(
        `^distill --teacher ${runs}/teacher-retrieval --data ${dir}/retrieval/retrieval.jsonl --variant mamba2 --attention 0.5 --tokens 1024 `,
      ),
    );
    sh(['arms', 'mamba2-0-retrieval'], env);
    expect(calls().filter((c) => c.startsWith('data retrieval')).length).toBe(1); // made once
    // a run the plan gives a multiple of the budget keeps it under TOKENS (mamba2-0-3x: 3 × 1024)
    const m = calls().length;
    sh(['arms', 'mamba2-0-3x'], env);
    expect(calls().slice(m)[0]).toMatch(/^distill .*--attention 0 --tokens 3072 .*--out \S+\/mamba2-0-3x /);
    // a name outside the plan: exit 2 naming it (and the plan's own list, without its budget line)
    expect(() => sh(['arms', 'mamba9-50'], env)).toThrow(/mamba9-50 is not a run of the small plan \(teacher draft /);
  });
  it("scripts/device_train.sh speculative: the bench over the draft and the named targets made on the machine, prompts from the corpus's test part, the report in OUT; a run not made there: exit 2 naming it", () => {
    const dir = tmpFolder('device-speculative');
    const runs = join(dir, 'runs');
    builtCorpus(join(dir, 'corpus'));
    const spec = { vocab: 2048, hidden: 16, intermediate: 32, heads: 2, kvHeads: 1 };
    const teacher = randomLlama({ ...spec, layers: 2 }, 3);
    saveModel(join(runs, 'draft'), randomLlama({ ...spec, layers: 1 }, 4));
    saveModel(join(runs, 'mamba2-50'), convert(teacher, { variant: 'mamba2', attentionFraction: 0.5, seed: 1 }));
    mkdirSync(join(dir, 'out'));
    const env = {
      MIL: 'false', // setup does not unpack the bundle where MIL is given; the bench runs on NODE
      NODE: 'node --import tsx',
      SPEC_JS: join(ROOT, 'bench', 'speculative_trained.ts'),
      CORPUS: join(dir, 'corpus'),
      RUNS: runs,
      OUT: join(dir, 'out'),
      BACKENDS: 'wasm-simd',
      KS: '2',
      RUNS_PER: '1',
      PROMPTS: '2',
      NEW_TOKENS: '6',
    };
    expect(sh(['speculative', 'mamba2-50'], env)).toMatch(/\| wasm-simd \| mamba2-50 \| 2 \| .* \| yes \|/);
    const report = JSON.parse(readFileSync(join(dir, 'out', 'speculative-trained.json'), 'utf8')) as {
      rows: Array<{ target: string; K: number; samples: number; identical: boolean }>;
    };
    expect(report.rows.map((r) => [r.target, r.K, r.samples, r.identical])).toEqual([['mamba2-50', 2, 2, true]]);
    const md = readFileSync(join(dir, 'out', 'speculative-trained.md'), 'utf8');
    expect(md).toContain(
      `Targets mamba2-50 (${runs}/mamba2-50); draft ${runs}/draft; 2 held-out prompts (${dir}/corpus test part)`,
    );
    expect(() => sh(['speculative', 'mamba2-0'], env)).toThrow(
      /mamba2-0 is not a whole run: make it first \(arms mamba2-0\)/,
    );
    expect(() => sh(['speculative'], env)).toThrow(/name the targets/);
  });
});
