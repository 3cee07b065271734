/**
 * `npm run web`: build the page (web/build.ts) into dist/web/ and serve it on http://localhost:PORT
 * (default 8080; `--port 0` picks a free one). The page computes everything itself: this server only sends
 * files. Ctrl-C stops it.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { parseArgs } from 'node:util';
import { buildWeb } from './build.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
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

/** Serve `dir` on `port` (0: any free port); resolves with the server and its URL. */
export function serveStatic(dir: string, port: number): Promise<{ server: Server; url: string }> {
  const server = createServer(async (req, res) => {
    const rel = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(
      /^(\.\.[/\\])+/,
      '',
    );
    const path = join(dir, rel === '/' ? 'index.html' : rel);
    if (!path.startsWith(dir)) return void res.writeHead(403).end();
    try {
      const body = await readFile(path);
      res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` }),
    ),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8080' },
      out: { type: 'string', default: join(import.meta.dirname, '..', 'dist', 'web') },
    },
  });
  await buildWeb(values.out);
  const { url } = await serveStatic(values.out, Number(values.port));
  console.log(`the page: ${url}  (built in ${values.out}; Ctrl-C stops)`);
}
