/**
 * `npm run fuzz`: 10^5 structured fuzz cases of the safetensors reader (lib/io/safetensors_fuzz.ts), with
 * the count of each outcome per mutation. Exit 1 if any case crashed with an untyped error or a file that
 * had to be rejected was accepted. Usage: node --import tsx bench/fuzz-safetensors.ts [N] [SEED]
 */
import { fuzz } from '../lib/io/safetensors_fuzz.js';

const n = Number(process.argv[2] ?? 100_000);
const seed = Number(process.argv[3] ?? 1);
const t0 = performance.now();
const { counts, problems } = fuzz(n, seed);
console.log(`safetensors reader fuzz: ${n} cases, seed ${seed}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
console.log(
  `${'mutation'.padEnd(18)} ${'accepted'.padStart(9)} ${'rejected'.padStart(9)} ${'WRONG-accepted'.padStart(15)} ${'CRASH'.padStart(6)}`,
);
for (const [m, c] of Object.entries(counts))
  console.log(
    `${m.padEnd(18)} ${String(c.accepted).padStart(9)} ${String(c.rejected).padStart(9)} ${String(c['WRONG-accepted']).padStart(15)} ${String(c.CRASH).padStart(6)}`,
  );
for (const p of problems) console.log(`PROBLEM ${p}`);
process.exit(problems.length ? 1 : 0);
