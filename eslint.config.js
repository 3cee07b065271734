// ESLint (flat config): JavaScript's and typescript-eslint's recommended rules over lib/, kernels/, spec/,
// bench/, scripts/, examples/, web/ and bin/, and one type-aware rule (below). Formatting is prettier's (.prettierrc.json); `npm run lint` runs both.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'docs/site/', 'dist/', 'asm/', 'runs/', 'scratch/', 'models/', 'golden/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // type-aware: a non-null assertion the types make unnecessary is an error (index reads need none:
    // tsconfig.json leaves noUncheckedIndexedAccess off, see lib/checked.ts; maps and records use `lookup`)
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['vitest.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: { '@typescript-eslint/no-unnecessary-type-assertion': 'error' },
  },
  {
    languageOptions: {
      globals: {
        console: 'readonly',
        process: 'readonly',
        Buffer: 'readonly',
        performance: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        URL: 'readonly',
        WebAssembly: 'readonly',
        SharedArrayBuffer: 'readonly',
        Atomics: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        queueMicrotask: 'readonly',
        structuredClone: 'readonly',
        navigator: 'readonly',
        globalThis: 'readonly',
      },
    },
  },
);
