/**
 * Timing for the benches that compare with peers in the same run (bench/matmul.ts, bench/gemv.ts): every
 * function measured interleaved, round after round, so a load that comes and goes on this shared machine hits
 * every peer alike.
 */

/** The median of xs (the upper one of an even count). */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Median ms of one call of each function, measured interleaved — round after round, each function runs for
 * ~40 ms in turn — so every peer sees the same machine (this one is shared; a load that comes and goes hits
 * all of them alike). Each warms up first (WebAssembly tiers up from its baseline compiler). A function that
 * returns a promise (onnxruntime's session.run) is awaited; the others are not, and pay no microtask.
 */
export async function timeAll(fs: Array<() => unknown>, rounds = 11): Promise<number[]> {
  const per: number[] = [];
  for (const f of fs) {
    const t = performance.now();
    let calls = 0;
    while (performance.now() - t < 300 || calls < 3) {
      const p = f();
      if (p instanceof Promise) await p;
      calls++;
    }
    per.push(Math.max(1, Math.round(40 / ((performance.now() - t) / calls))));
  }
  const samples: number[][] = fs.map(() => []);
  for (let r = 0; r < rounds; r++)
    for (const [i, f] of fs.entries()) {
      const t = performance.now();
      for (let k = 0; k < per[i]; k++) {
        const p = f();
        if (p instanceof Promise) await p;
      }
      samples[i].push((performance.now() - t) / per[i]);
    }
  return samples.map(median);
}

/**
 * The environment of a PyTorch peer on `threads` CPU threads: OpenBLAS as it tunes itself on this CPU (the
 * machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset), on as many threads as torch.
 */
export function torchEnv(threads: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    OPENBLAS_CORETYPE: undefined,
    OPENBLAS_L2_SIZE: undefined,
    OPENBLAS_NUM_THREADS: String(threads),
  };
}
