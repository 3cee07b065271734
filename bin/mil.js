#!/usr/bin/env node
// Entry point of the `mil` command.
//
// - An installed package (no TypeScript sources beside this file): runs the compiled build,
//   dist/lib/cli/main.js, with plain node — nothing is compiled at run time.
// - A checkout (lib/cli/main.ts beside this file, dev dependencies installed): runs the TypeScript sources
//   through tsx, so `npx mil` in the repository always runs the code as it is now and never a stale build.
//   MIL_DIST=1 runs the build there too (`npm run build` first); so does a checkout without tsx.
// Neither there: exit 6 (an environment failure) with what to do.
import { existsSync } from 'node:fs';

const here = new URL('..', import.meta.url);
const sources = new URL('lib/cli/main.ts', here);
const built = new URL('dist/lib/cli/main.js', here);

async function loadMain() {
  if (existsSync(sources) && process.env.MIL_DIST !== '1') {
    const tsx = await import('tsx/esm/api').catch(() => null);
    if (tsx) {
      tsx.register();
      return (await import(sources.href)).main;
    }
  }
  if (existsSync(built)) return (await import(built.href)).main;
  process.stderr.write(
    `mil: no build at ${built.pathname} and no tsx to run the sources: run \`npm run build\` (or \`npm install\` for tsx)\n`,
  );
  process.exit(6);
}

const main = await loadMain();
const code = await main(process.argv.slice(2));
// Dawn (webgpu) keeps handles open; exit explicitly once output is flushed.
process.stdout.write('', () => process.exit(code));
