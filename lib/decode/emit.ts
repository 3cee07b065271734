/**
 * The tail of a speculative round shared by the CPU loop (./speculative.ts) and the GPU loop (./gpu_speculative.ts):
 * the tokens a round emits go to the output in order, up to maxNewTokens and through the first eos.
 */
/**
 * A round's emitted tokens into `out`, in order, up to `maxNewTokens` and through the first eos: each passed to
 * `onToken`. Returns the tokens kept and whether an eos ended the generation (the CPU and GPU loops' shared tail).
 */
export function emitTokens(
  emitted: readonly number[],
  out: number[],
  maxNewTokens: number,
  eos: ReadonlySet<number>,
  onToken?: (t: number) => void,
): { kept: number[]; stopped: boolean } {
  const kept: number[] = [];
  for (const t of emitted) {
    if (out.length >= maxNewTokens) break;
    out.push(t);
    kept.push(t);
    onToken?.(t);
    if (eos.has(t)) return { kept, stopped: true };
  }
  return { kept, stopped: false };
}

/** Accepted drafts over proposed drafts across rounds (0 when none was proposed): both loops report it. */
export function acceptanceOf(rounds: ReadonlyArray<{ proposed: number; accepted: number }>): number {
  const proposed = rounds.reduce((s, r) => s + r.proposed, 0);
  return proposed ? rounds.reduce((s, r) => s + r.accepted, 0) / proposed : 0;
}
