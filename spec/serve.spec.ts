/**
 * The page's static server (web/serve.ts) under hostile requests, on loopback only: a malformed path
 * (`/%`, a bad %-escape, a NUL) is answered 400 and the server goes on; a path out of the folder 403;
 * every response carries the cross-origin isolation headers; 10,000 random paths and header values, each
 * followed by the server still answering; a bad `--port` is refused with exit 2 and no stack trace.
 */
import { spawnSync } from 'node:child_process';
import { request, Agent } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESPONSE_HEADERS } from '../web/build.js';
import { parsePort, resolveRequest, serveStatic } from '../web/serve.js';
import { tmpFolder } from './tmp.js';

let dir: string;
let base: string;
let close: () => void;
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

/** GET a raw path (no normalisation by a URL parser on the way). */
function get(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((done, fail) => {
    const u = new URL(base);
    const req = request({ host: u.hostname, port: u.port, path, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.setTimeout(5000, () => req.destroy(new Error(`no answer to GET ${path} in 5 s`)));
    req.end();
  });
}

beforeAll(async () => {
  dir = tmpFolder('serve');
  writeFileSync(join(dir, 'index.html'), '<p>page</p>');
  writeFileSync(join(dir, 'a.js'), 'x');
  const s = await serveStatic(dir, 0);
  base = s.url;
  close = () => s.server.close();
});
afterAll(() => {
  agent.destroy();
  close();
});

describe('web/serve.ts', () => {
  it('answers a malformed path with 400 and goes on serving (GET /% killed the server before)', async () => {
    for (const p of ['/%', '/%zz', '/a%', '/%E0%A4%A', '/%00', '/a.js%00.html']) {
      const r = await get(p);
      expect(r.status, p).toBe(400);
    }
    expect((await get('/')).body).toBe('<p>page</p>');
    expect((await get('/a.js')).status).toBe(200);
  });

  it('refuses paths out of the folder and sends the isolation headers on every response', async () => {
    expect(resolveRequest(dir, '/../../etc/passwd')).not.toHaveProperty('path', '/etc/passwd');
    for (const p of ['/', '/a.js', '/missing', '/%', '/..%2f..%2fetc%2fpasswd']) {
      const r = await get(p);
      for (const [k, v] of Object.entries(RESPONSE_HEADERS)) expect(r.headers[k], `${p} ${k}`).toBe(v);
      if (r.status === 200) expect(r.body === '<p>page</p>' || r.body === 'x').toBe(true);
    }
  });

  it('10,000 random paths and header values: each answered with 200, 400, 403 or 404, the server answering after each', async () => {
    // what Node's client lets through: path bytes 0x21–0xff, header values of printable ASCII
    const pathChar = fc.integer({ min: 0x21, max: 0xff }).map((c) => String.fromCharCode(c));
    const seg = fc.oneof(
      fc.constantFrom('%', '%2e', '%2f', '..', '.', '//', '%00', '%C0%AE', 'index.html', 'a.js', '?', '#'),
      pathChar,
    );
    const paths = fc.sample(
      fc.array(seg, { maxLength: 12 }).map((xs) => '/' + xs.join('')),
      { numRuns: 10_000, seed: 7 },
    );
    const values = fc.sample(
      fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
      { numRuns: 10_000, seed: 8 },
    );
    const seen = new Map<number, number>();
    for (let i = 0; i < paths.length; i++) {
      const r = await get(paths[i] ?? '/', { 'x-fuzz': values[i] ?? '', range: values[i] ?? '' });
      expect([200, 400, 403, 404], paths[i]).toContain(r.status);
      seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
    }
    expect((await get('/')).status).toBe(200);
    expect(seen.get(400) ?? 0).toBeGreaterThan(0); // the malformed ones were drawn and refused
  });

  it('a bad --port is refused with exit 2, a message naming it, and no stack trace', () => {
    expect(parsePort('8080')).toBe(8080);
    expect(parsePort('0')).toBe(0);
    for (const bad of ['abc', '-1', '65536', '80.5', '']) expect(parsePort(bad), bad).toBeNull();
    const r = spawnSync('node', ['--import', 'tsx', join(import.meta.dirname, '../web/serve.ts'), '--port', 'abc'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--port: expected an integer from 0 to 65535, got "abc"/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const u = spawnSync('node', ['--import', 'tsx', join(import.meta.dirname, '../web/serve.ts'), '--bogus'], {
      encoding: 'utf8',
    });
    expect(u.status).toBe(2);
    expect(u.stderr).not.toMatch(/\n\s+at /);
  });
});
