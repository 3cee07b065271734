import { defineConfig } from 'vitest/config';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The package's own entries (`mamba-in-llama/conform`, …) resolve to the TypeScript sources in the repository's
 * tests, as they do for tsc (tsconfig.json's `paths`; package.json's exports point into dist/, which the tests
 * do not build): docs/properties.md's example runs as spec/properties_example.spec.ts.
 */
const paths = (
  JSON.parse(readFileSync(resolve(import.meta.dirname, 'tsconfig.json'), 'utf8')) as {
    compilerOptions: { paths: Record<string, string[]> };
  }
).compilerOptions.paths;
const selfAlias = Object.entries(paths).map(([name, [path]]) => ({
  find: new RegExp(`^${name}$`),
  replacement: resolve(import.meta.dirname, path),
}));

export default defineConfig({
  resolve: { alias: selfAlias },
  test: {
    include: ['spec/**/*.spec.ts'],
    globalSetup: ['spec/global-setup.ts'],
    // Dawn (webgpu) and the webasm worker pool are process-wide: one fork per file, not threads.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
