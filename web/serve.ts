/**
 * `npm run web`: build the page (web/build.ts) into dist/web/ and serve it on http://localhost:PORT
 * (default 8080; `--port 0` picks a free one). The page computes everything itself: this server only sends
 * files. Ctrl-C stops it.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { RESPONSE_HEADERS, buildWeb } from './build.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
  '.wasm': 'application/wasm',
};

/**
 * Headless Chromium's flags for the page (spec/web.spec.ts, web/screenshots.ts): no sandbox (CI runs as root), no
 * background networking, and Chromium's SwiftShader as a WebGPU adapter and WebGL2 device, so GPU.js's webgpu and
 * webgl2 kernels run on a machine without a GPU.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-dev-shm-usage',
  '--no-first-run',
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
];

/**
 * The file a request path names under `dir`, or the status that refuses it: 400 for a path that is not a
 * well-formed URL path (a bad %-escape such as `/%`, a NUL), 403 for one that leaves `dir`.
 */
export function resolveRequest(dir: string, url: string | undefined): { path: string } | { status: 400 | 403 } {
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(url ?? '/', 'http://x').pathname);
  } catch {
    return { status: 400 };
  }
  if (pathname.includes('\0')) return { status: 400 };
  const rel = normalize(pathname).replace(/^(\.\.[/\\])+/, '');
  const root = resolve(dir);
  const path = resolve(root, '.' + sep + (rel === '/' || rel === sep ? 'index.html' : rel));
  if (path !== root && !path.startsWith(root + sep)) return { status: 403 };
  return { path };
}

/** Serve `dir` on `port` (0: any free port); resolves with the server and its URL. */
export function serveStatic(dir: string, port: number): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const r = resolveRequest(dir, req.url);
    if ('status' in r) return void res.writeHead(r.status, RESPONSE_HEADERS).end(r.status === 400 ? 'bad request' : '');
    readFile(r.path).then(
      (body) =>
        res
          .writeHead(200, { ...RESPONSE_HEADERS, 'content-type': TYPES[extname(r.path)] ?? 'application/octet-stream' })
          .end(body),
      () => res.writeHead(404, RESPONSE_HEADERS).end('not found'),
    );
  });
  return new Promise((done, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () =>
      done({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` }),
    );
  });
}

/** `--port`'s value as a port number, or null when it is not an integer from 0 to 65535. */
export function parsePort(v: string): number | null {
  return /^\d{1,5}$/.test(v) && Number(v) <= 65535 ? Number(v) : null;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const options = {
    port: { type: 'string', default: '8080' },
    out: { type: 'string', default: join(import.meta.dirname, '..', 'dist', 'web') },
  } as const;
  let values: { port: string; out: string };
  try {
    values = parseArgs({ options }).values;
  } catch (e) {
    console.error(`npm run web: ${(e as Error).message} (options: --port N, --out DIR)`);
    process.exit(2);
  }
  const port = parsePort(values.port);
  if (port === null) {
    console.error(`npm run web: --port: expected an integer from 0 to 65535, got ${JSON.stringify(values.port)}`);
    process.exit(2);
  }
  await buildWeb(values.out);
  const { url } = await serveStatic(values.out, port).catch((e: NodeJS.ErrnoException) => {
    console.error(`npm run web: cannot listen on 127.0.0.1:${port} (${e.code ?? e.message})`);
    process.exit(6); // an environment failure: the exit codes of mil (lib/cli/exit.ts)
  });
  console.log(`the page: ${url}  (built in ${values.out}; Ctrl-C stops)`);
}
