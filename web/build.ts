/**
 * Build the browser page: web/app.ts and everything it imports from lib/, bundled by esbuild for browsers,
 * with web/index.html and the shipped models it loads, into one static folder (default dist/web/) that any
 * static file server can serve.
 *   node --import tsx web/build.ts [--out DIR]
 * Node built-ins that lib/ imports for its file and worker code (never called by the page) become empty
 * modules; gpu.js comes in as its browser build (its package's `browser` field: webgl2, webgpu, webasm, cpu);
 * the `webgpu` package (Dawn, for Node) stays out: in a browser the kernel runtime uses navigator.gpu.
 * The folder holds asm/gemm.wasm and asm/gemm-fma.wasm (the page's wasm-simd backend) and a `_headers` file
 * naming the headers every response must carry (cross-origin isolation: COOP same-origin, COEP require-corp);
 * a static host that ignores `_headers` must be set to send them, or the page lists wasm-simd as unavailable.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';
import { writeFolder } from '../lib/io/writer.js';

const ROOT = join(import.meta.dirname, '..');
export const WEB_MODELS = ['teacher-small', 'hybrid-mamba2-50', 'draft-small'];
const MODEL_FILES = ['config.json', 'mamba_config.json', 'mil_config.json', 'model.safetensors'];

const nodeStubs: Plugin = {
  name: 'node-stubs',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (a) => ({ path: a.path, namespace: 'node-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'node-stub' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};

/**
 * Headers on every response (web/serve.ts sends them; the static build's `_headers` names them): cross-origin isolation (so the page has SharedArrayBuffer, which the wasm-simd
 * backend's worker threads need) and no MIME sniffing.
 */
export const RESPONSE_HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'x-content-type-options': 'nosniff',
} as const;

/**
 * `_headers` of the static build: every path with RESPONSE_HEADERS — cross-origin isolation,
 * without which the page has no SharedArrayBuffer and no wasm-simd backend.
 */
function headersFile(): string {
  return ['/*', ...Object.entries(RESPONSE_HEADERS).map(([k, v]) => `  ${k}: ${v}`), ''].join('\n');
}

/** Bundle and copy into `out` (written whole through the one writer: never a half-built folder). */
export async function buildWeb(out: string): Promise<void> {
  const r = await build({
    entryPoints: [join(ROOT, 'web', 'app.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    external: ['webgpu'], // Node's Dawn binding: the page uses the browser's own navigator.gpu
    plugins: [nodeStubs],
    logLevel: 'warning',
  });
  const js = r.outputFiles[0].contents;
  writeFolder(out, (stage) => {
    stage.writeFile('app.js', js);
    stage.writeFile('index.html', readFileSync(join(ROOT, 'web', 'index.html')));
    // the wasm-simd backend's module, both builds (the page takes the FMA one where the browser runs relaxed SIMD)
    for (const f of ['gemm.wasm', 'gemm-fma.wasm']) stage.writeFile(f, readFileSync(join(ROOT, 'asm', f)));
    // the headers a static host must send (Netlify and Cloudflare Pages read _headers; web/serve.ts sends them)
    stage.writeFile('_headers', headersFile());
    stage.writeFile('models/tokenizer.json', readFileSync(join(ROOT, 'models', 'tokenizer.json')));
    const manifest: Record<string, string[]> = {};
    for (const m of WEB_MODELS) {
      manifest[m] = MODEL_FILES.filter((f) => existsSync(join(ROOT, 'models', m, f))); // a Llama has no mamba_config.json
      for (const f of manifest[m]) stage.writeFile(`models/${m}/${f}`, readFileSync(join(ROOT, 'models', m, f)));
    }
    stage.writeFile('models/manifest.json', JSON.stringify(manifest, null, 1) + '\n'); // the page fetches what is listed
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist', 'web') } } });
  await buildWeb(values.out);
  console.log(`built ${values.out}`);
}
