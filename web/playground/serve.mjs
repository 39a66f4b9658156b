// Serves the policy playground on 127.0.0.1 only: the page (this folder),
// the npm package built by `make npm` (target/npm/package, at /pkg/), the
// SP-API samples of tests/support/sp_api.py and a default policy from
// envoy/policies. Nothing is fetched from anywhere else; the
// Content-Security-Policy header tells the browser so too.
//
//   node web/playground/serve.mjs [--port 8417]    (port 0: any free port)
//
// Prints `playground: http://127.0.0.1:PORT/` once listening.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('./', import.meta.url));
const ROOT = join(HERE, '..', '..');
const PACKAGE = join(ROOT, 'target', 'npm', 'package');

const args = process.argv.slice(2);
const portArg = args.indexOf('--port');
const port = portArg >= 0 ? Number(args[portArg + 1]) : 8417;

if (!existsSync(join(PACKAGE, 'index.js'))) {
  console.error(`${PACKAGE} is missing: run \`make npm\` (make playground does)`);
  process.exit(1);
}

const samples = execFileSync('python3', [join(HERE, 'samples.py')]);
const defaultPolicy = readFileSync(join(ROOT, 'envoy', 'policies', 'hop-a-encrypt.json'));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.ts': 'text/plain; charset=utf-8',
};

// 'wasm-unsafe-eval': compiling the WebAssembly module; nothing else runs
// but the page's own scripts, and nothing connects anywhere but here.
const CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The file under `base` for `rel`, or null if it would leave `base`. */
function inside(base, rel) {
  const path = normalize(join(base, rel));
  return path.startsWith(base.endsWith(sep) ? base : base + sep) ? path : null;
}

function resolve(url) {
  const path = decodeURIComponent(new URL(url, 'http://127.0.0.1').pathname);
  if (path === '/' || path === '/index.html') return { file: join(HERE, 'index.html') };
  if (path === '/samples.json') return { body: samples, type: TYPES['.json'] };
  if (path === '/default-policy.json') return { body: defaultPolicy, type: TYPES['.json'] };
  if (path.startsWith('/pkg/')) return { file: inside(PACKAGE, path.slice(5)) };
  if (['/app.js', '/editor.js', '/style.css', '/favicon.svg'].includes(path)) return { file: join(HERE, path.slice(1)) };
  return {};
}

const server = createServer((req, res) => {
  const headers = {
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, headers).end();
    return;
  }
  const found = resolve(req.url);
  let body = found.body;
  let type = found.type;
  if (found.file && existsSync(found.file)) {
    body = readFileSync(found.file);
    type = TYPES[extname(found.file)] ?? 'application/octet-stream';
  }
  if (!body) {
    res.writeHead(404, { ...headers, 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  res.writeHead(200, { ...headers, 'content-type': type, 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`playground: http://127.0.0.1:${server.address().port}/`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
