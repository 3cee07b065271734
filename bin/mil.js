#!/usr/bin/env node
// Entry point of the `mil` command: runs the TypeScript sources directly through tsx.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../lib/cli/main.ts');
const code = await main(process.argv.slice(2));
// Dawn (webgpu) keeps handles open; exit explicitly once output is flushed.
process.stdout.write('', () => process.exit(code));
