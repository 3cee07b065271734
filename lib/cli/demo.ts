/**
 * `mil demo`: the main job on built-in data, end to end.
 *  1. check every kernel and the three golden models (Llama, Mamba-1 and Mamba-2 hybrids) against the upstream golden vectors, on every backend here;
 *  2. convert the built-in teacher (golden/models/llama_tiny) into Mamba-1 and Mamba-2 hybrids with 50%
 *     attention (Algorithm 1) and write them in the MambaInLlama format;
 *  3. generate from the golden prompt with the teacher and both hybrids, printing tokens and tokens/s;
 *  4. generate with speculative decoding (Algorithm 2) — the golden Mamba-1 hybrid and the converted Mamba-2
 *     hybrid as targets, the teacher's first 2 layers as draft, K = 4 — and compare with plain decoding of
 *     the same prompt in the same run: tokens per verify step, acceptance, speed, identical output.
 */
import { join } from 'node:path';
import { backendStatus, getOps } from '../ops.js';
import { verifyGolden } from '../golden/verify.js';
import { loadModel } from '../model/load.js';
import { convert, saveModel } from '../model/convert.js';
import { generate } from '../model/generate.js';
import { getTensor, readSafetensors } from '../io/safetensors.js';
import { ModelDrafter, speculativeGenerate, truncateLayers } from '../decode/speculative.js';

export async function demo(root: string, outDir: string, backend: string | undefined): Promise<number> {
  const golden = join(root, 'golden');
  console.log('== 1. golden vectors (upstream PyTorch, float64) ==');
  let failed = 0;
  const status = await backendStatus();
  for (const s of status) {
    if (!s.available) {
      console.log(`  ${s.name.padEnd(16)} not available here: ${s.reason}`);
      continue;
    }
    const r = await verifyGolden(golden, s.name);
    failed += r.failed;
    const worst = Math.max(...r.results.flatMap((c) => Object.entries(c.errors).filter(([k]) => k !== 'greedy_mismatches').map(([, v]) => v)));
    console.log(`  ${s.name.padEnd(16)} ${r.passed} passed, ${r.failed} failed, ${r.unsupported} unsupported   (largest relative error ${worst.toExponential(1)})`);
  }
  console.log('  (unsupported: the backward and training-step cases, which run on the float64 reference only so far)');

  console.log('\n== 2. Algorithm 1: convert the built-in teacher into hybrids ==');
  const teacherDir = join(golden, 'models', 'llama_tiny');
  const teacher = loadModel(teacherDir);
  const models: Array<[string, ReturnType<typeof loadModel>]> = [['teacher (Llama)', teacher]];
  for (const variant of ['mamba1', 'mamba2'] as const) {
    const m = convert(teacher, { variant, attentionFraction: 0.5, seed: 0 });
    const dir = join(outDir, `hybrid-${variant}-50`);
    saveModel(dir, m);
    const back = loadModel(dir);
    console.log(`  ${variant}: attention kept in layers [${m.mamba!.attnLayers.join(', ')}] of ${m.llama.numLayers}; written to ${dir}`);
    models.push([`${variant} hybrid 50%`, back]);
  }

  const g = readSafetensors(join(teacherDir, 'golden.safetensors'));
  const prompt = Array.from(getTensor(g, 'prompt').data);
  const chosen = backend ?? 'reference';
  const ops = await getOps(chosen);
  console.log(`\n== 3. generate 24 tokens from prompt [${prompt.join(', ')}] (greedy, backend ${chosen}) ==`);
  for (const [name, m] of models) {
    await generate(ops, m, prompt, { maxNewTokens: 2, eos: [] }); // warm-up (kernel compilation)
    const r = await generate(ops, m, prompt, { maxNewTokens: 24, eos: [] });
    console.log(`  ${name.padEnd(20)} ${r.tokens.join(' ')}`);
    console.log(`  ${''.padEnd(20)} prefill ${r.prefill.tokensPerS.toFixed(0)} tok/s, decode ${r.decode.tokensPerS.toFixed(0)} tok/s`);
  }
  console.log('  (the hybrids are not distilled, so their continuations differ from the teacher’s)');

  const K = 4;
  console.log(`\n== 4. speculative decoding (Algorithm 2), K = ${K}, greedy, backend ${chosen} ==`);
  const draft = truncateLayers(teacher, 2);
  const targets: Array<[string, ReturnType<typeof loadModel>]> = [
    ['golden hybrid_mamba1', loadModel(join(golden, 'models', 'hybrid_mamba1'))],
    ['converted mamba2 50%', models[2]![1]],
  ];
  for (const [name, t] of targets) {
    for (const [dname, d] of [['teacher’s first 2 layers', draft], ['the target itself (always accepted)', t]] as const) {
      await generate(ops, t, prompt, { maxNewTokens: 2, eos: [] });
      const plain = await generate(ops, t, prompt, { maxNewTokens: 24, eos: [] });
      await speculativeGenerate(ops, t, new ModelDrafter(ops, d, K + 1, 'lazy'), prompt, { K, maxNewTokens: 2, eos: [] });
      const s = await speculativeGenerate(ops, t, new ModelDrafter(ops, d, K + 1, 'lazy'), prompt, { K, maxNewTokens: 24, eos: [] });
      const same = s.tokens.join() === plain.tokens.join();
      if (!same) failed++;
      const plainMs = plain.prefill.ms + plain.decode.ms;
      const specMs = s.prefillMs + s.decodeMs;
      console.log(`  ${name}, draft = ${dname}:`);
      console.log(`    ${s.rounds.length} verify steps, ${s.tokensPerVerify.toFixed(2)} tokens/step, acceptance ${(100 * s.acceptanceRate).toFixed(0)}% (accepted per step: ${s.rounds.map((r) => r.accepted).join(' ')})`);
      console.log(`    ${((s.tokens.length * 1000) / specMs).toFixed(0)} tok/s vs plain ${((plain.tokens.length * 1000) / plainMs).toFixed(0)} tok/s: ×${(plainMs / specMs).toFixed(2)}; output ${same ? 'identical to' : 'DIFFERS FROM'} plain greedy decoding`);
    }
  }
  console.log('  (a draft costs about as much as these tiny targets on a CPU, so speedups here are below 1; see bench/results/speculative.md)');
  return failed > 0 ? 1 : 0;
}
