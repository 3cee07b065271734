/**
 * The exit status of `mil`, and which error means which status — the one place both are written.
 *
 *     0  success
 *     1  a check failed: a golden case mismatched (or was unsupported without --allow-unsupported), a conform case failed
 *     2  bad usage or input: UsageError, and every other MilError (a malformed option, model folder, config,
 *        checkpoint, corpus, tokenizer or golden file; a model too large for the memory)
 *     3  a training run diverged: DivergedError (a non-finite or exploding loss; nothing written, the last good
 *        checkpoint kept), NonFiniteGradientError where no job catches it
 *     4  the output is locked by another live run: OutputLockedError (names the holder's pid and the lock file)
 *     5  mil conform checked nothing: the port answered unsupported to every case
 *     6  an I/O or environment failure: IoError (an unwritable output, a full disk), BackendUnavailableError,
 *        KernelError, MissingSourceError (a corpus source's package not installed: names it and its install command)
 *     7  an internal error: anything that is not one of the above (a bug; the stack trace is printed)
 *   130  interrupted by Ctrl-C (SIGINT); 143 terminated by SIGTERM (128 + the signal's number, as a shell reports)
 *
 * README.md's table of exit codes is checked against EXIT and EXIT_MEANING, and each error class it names
 * against `exitCodeFor` (spec/reliability.spec.ts).
 */
import { BackendUnavailableError, DeviceLimitError, KernelError, MilError } from '../errors.js';
import { IoError, OutputLockedError } from '../io/writer.js';
import { DivergedError } from '../train/job.js';
import { NonFiniteGradientError } from '../train/trainer.js';
import { UsageError } from './args.js';
import { MissingSourceError } from '../data/sources.js';

export const EXIT = {
  ok: 0,
  checkFailed: 1,
  usage: 2,
  diverged: 3,
  locked: 4,
  nothingChecked: 5,
  io: 6,
  internal: 7,
  interrupted: 130,
  terminated: 143,
} as const;
export type ExitName = keyof typeof EXIT;

/** What each status means, in the words that begin its row in README.md and make up --help's line. */
export const EXIT_MEANING: Record<ExitName, string> = {
  ok: 'success',
  checkFailed: 'a check failed',
  usage: 'bad usage or input',
  diverged: 'a training run diverged',
  locked: 'the output is locked by another run',
  nothingChecked: 'mil conform checked nothing',
  io: 'an I/O or environment failure',
  internal: 'an internal error',
  interrupted: 'interrupted (SIGINT)',
  terminated: 'terminated (SIGTERM)',
};

/** The `exit status:` lines of `mil --help` (wrapped at 110 columns). */
export const EXIT_HELP = (Object.keys(EXIT) as ExitName[])
  .map((k) => `${EXIT[k]} ${EXIT_MEANING[k]}`)
  .reduce((text, item, i, all) => {
    const next = `${item}${i < all.length - 1 ? ',' : ''}`;
    const line = text.slice(text.lastIndexOf('\n') + 1);
    return line.length + 1 + next.length > 110 ? `${text}\n${next}` : `${text} ${next}`;
  }, 'exit status:');

type ErrorClass = abstract new (...args: never[]) => Error;

/** Error class → exit status; the first class the error is an instance of wins (subclasses before MilError). */
const ERROR_EXITS: ReadonlyArray<readonly [ErrorClass, ExitName]> = [
  [UsageError, 'usage'],
  [DivergedError, 'diverged'],
  [NonFiniteGradientError, 'diverged'],
  [OutputLockedError, 'locked'],
  [IoError, 'io'],
  [BackendUnavailableError, 'io'],
  [KernelError, 'io'],
  [MissingSourceError, 'io'],
  [DeviceLimitError, 'io'],
  [MilError, 'usage'],
];

/** The exit status for an error thrown by a command (ERROR_EXITS; anything else is a bug: EXIT.internal). */
export function exitCodeFor(e: unknown): number {
  for (const [cls, name] of ERROR_EXITS) if (e instanceof cls) return EXIT[name];
  return EXIT.internal;
}
