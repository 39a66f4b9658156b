// Shared helpers of the Node tests: repository paths, the dpp-guard CLI, a
// real Envoy with the filter (envoy_stack.py), HTTPS requests, samples.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(ROOT, 'target/debug/dpp-guard');
export const PYTHON = join(ROOT, '.venv/bin/python');
export const PACKAGE_DIR = join(ROOT, 'target/npm/package');

export function readJson(rel) {
  return JSON.parse(readFileSync(join(ROOT, rel), 'utf8'));
}

export function unhex(s) {
  return Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
}

export function hex(bytes) {
  return Buffer.from(bytes).toString('hex');
}

/** A temporary directory for one test file. */
export function scratch(prefix = 'dpp-web-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The SP-API Orders samples of tests/support/sp_api.py, with their PII values. */
let samplesCache;
export function spApiSamples() {
  if (samplesCache) return structuredClone(samplesCache);
  const out = spawnSync('python3', [join(ROOT, 'web/playground/samples.py')], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`samples.py failed: ${out.stderr}`);
  samplesCache = JSON.parse(out.stdout);
  return structuredClone(samplesCache);
}

/** PII values of a sample found in `text` (raw or JSON-escaped). */
export function leaks(text, pii) {
  return pii.filter((v) => text.includes(v) || text.includes(JSON.stringify(v).slice(1, -1)));
}

/** Runs `dpp-guard ARGS` with the keyring in DPP_GUARD_KEYS. */
export function cli(args, { input, keys }) {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run make test-bins`);
  const out = spawnSync(CLI, args, {
    input,
    env: { ...process.env, DPP_GUARD_KEYS: keys },
    encoding: 'utf8',
  });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
}

/** Writes a policy to a file and returns its path. */
export function policyFile(dir, name, policy) {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(policy, null, 2));
  return path;
}

/**
 * Starts a real Envoy (from .venv) with the compiled filter and `policy`, in
 * front of an echo service. Resolves to {port, ca, stop()}.
 */
export async function startEnvoy(policy, keys) {
  const dir = scratch('dpp-web-envoy-');
  const file = policyFile(dir, 'policy.json', policy);
  const child = spawn(PYTHON, [join(ROOT, 'web/tests/support/envoy_stack.py'), file], {
    env: { ...process.env, DPP_GUARD_KEYS: keys },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', resolve);
    exited.then((code) => reject(new Error(`envoy_stack.py exited ${code}: ${stderr}`)));
  });
  const info = JSON.parse(line);
  return {
    port: info.port,
    ca: readFileSync(info.ca),
    log: () => (existsSync(info.log) ? readFileSync(info.log, 'utf8') : ''),
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGTERM'), 20000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** One HTTPS request to the Envoy listener; resolves to {status, headers, body}. */
export function request(envoy, method, path, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: envoy.port,
        method,
        path,
        ca: envoy.ca,
        servername: 'localhost',
        headers: { host: 'localhost', ...headers, ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) },
        agent: false,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error('timeout')));
    if (body) req.write(body);
    req.end();
  });
}

/** The envelope strings of a body, in order. */
export function envelopes(text) {
  return [...text.matchAll(/"(dpg1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?)"/g)].map((m) => m[1]);
}

/** The body with one base64url character of the envelope's payload changed. */
export function changeOneByte(text, envelope) {
  const at = envelope.indexOf('.', 5) + 8; // inside the nonce/ciphertext
  const c = envelope[at] === 'A' ? 'B' : 'A';
  const changed = envelope.slice(0, at) + c + envelope.slice(at + 1);
  return text.replace(envelope, changed);
}
