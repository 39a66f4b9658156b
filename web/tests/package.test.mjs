// The npm package as a Node user gets it: the packed tarball's contents and
// size, its exports and declarations, and what each function answers.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as dpp from 'dpp-guard';
import { checkPolicy, DppError, generateKeyEntry, generateKeyring, generateLogKey, Keyring, Policy, PolicyError } from 'dpp-guard';
import { cli, leaks, ROOT, scratch, spApiSamples } from './support/index.mjs';

const NPM_OUT = join(ROOT, 'target/npm');
const MiB = 1024 * 1024;

function tarball() {
  const tgz = readdirSync(NPM_OUT).filter((f) => /^dpp-guard-.*\.tgz$/.test(f));
  assert.equal(tgz.length, 1, `one tarball in target/npm (make npm): ${tgz}`);
  return join(NPM_OUT, tgz[0]);
}

test('npm pack gives a tarball with the module, both entry points, declarations and README', () => {
  const files = execFileSync('tar', ['-tzf', tarball()], { encoding: 'utf8' }).trim().split('\n').sort();
  assert.deepEqual(files, [
    'package/README.md',
    'package/api.js',
    'package/index.d.ts',
    'package/index.js',
    'package/node.js',
    'package/package.json',
    'package/wasm/dpp_guard_web.d.ts',
    'package/wasm/dpp_guard_web.js',
    'package/wasm/dpp_guard_web_bg.wasm',
    'package/wasm/dpp_guard_web_bg.wasm.d.ts',
  ]);
});

test('the WebAssembly module is at most 1 MiB', () => {
  const installed = fileURLToPath(new URL('./wasm/dpp_guard_web_bg.wasm', import.meta.resolve('dpp-guard')));
  const size = statSync(installed).size;
  assert.ok(size > 100 * 1024, `a real module (${size} bytes)`);
  assert.ok(size <= MiB, `${size} bytes > 1 MiB`);
});

test('Node resolves the package to its Node entry; browsers and bundlers get index.js', () => {
  assert.match(import.meta.resolve('dpp-guard'), /\/node_modules\/dpp-guard\/node\.js$/);
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('./package.json', import.meta.resolve('dpp-guard'))), 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.exports['.'].default, './index.js');
  assert.equal(pkg.exports['.'].types, './index.d.ts');
});

test('every export is declared in index.d.ts and every declaration is exported', () => {
  const dts = readFileSync(fileURLToPath(new URL('./index.d.ts', import.meta.resolve('dpp-guard'))), 'utf8');
  const declared = [...dts.matchAll(/^export (?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(dpp).sort());
});

test('an invalid policy is reported with the field path, in the words of the CLI and the plugin', () => {
  const dir = scratch();
  const cases = [
    [{ version: 1, routes: [{ name: 'a', match: { path: { regex: '(' } } }] }, 'routes[0].match.path.regex'],
    [{ version: 1, routes: [{ name: 'a', matchh: {} }] }, 'routes[0].matchh'],
    [{ version: 1, routes: [{ name: 'a' }, { name: 'a' }] }, 'routes[1].name'],
    [{ version: 1, routes: [{ name: 'a', encrypt: [{ direction: 'request', selectors: ['$.a'] }] }] }, 'keys'],
    [{ version: 3 }, 'version'],
  ];
  for (const [doc, field] of cases) {
    const text = JSON.stringify(doc);
    const check = checkPolicy(text);
    assert.equal(check.ok, false);
    assert.equal(check.error.field, field, text);
    // `dpp-guard validate-policy FILE` prints `FILE: <the plugin's message>`.
    const file = join(dir, 'p.json');
    writeFileSync(file, text);
    const out = cli(['validate-policy', file], { keys: '' });
    assert.equal(out.status, 1);
    assert.equal(out.stderr.trim(), `${file}: ${check.error.message}`);
    assert.throws(() => Policy.parse(text), (e) => e instanceof PolicyError && e.field === field && e.code === 'invalid_policy');
  }
  assert.equal(checkPolicy('{"version":1}').ok, true);
});

test('keyrings: generated ones parse, errors never show key text, byte input is wiped', () => {
  const text = generateKeyring(['k1', 'k2']);
  const ring = Keyring.parse(text);
  assert.deepEqual(ring.ids, ['k1', 'k2']);
  assert.equal(ring.primary, 'k1');
  ring.free();
  assert.throws(() => ring.ids, (e) => e.code === 'freed', 'a freed keyring holds no keys');

  const entry = generateKeyEntry('t1');
  assert.match(entry, /^t1=[A-Za-z0-9_-]{43}$/);
  assert.notEqual(entry, generateKeyEntry('t1'));
  assert.throws(() => generateKeyEntry('bad id'), DppError);

  const truncated = entry.slice(0, -1);
  assert.throws(
    () => Keyring.parse(truncated),
    (e) => e instanceof DppError && e.code === 'invalid_keyring' && !e.message.includes(truncated.slice(3, 20)),
  );
  const bytes = new TextEncoder().encode(entry);
  Keyring.parse(bytes).free();
  assert.ok(bytes.every((b) => b === 0), 'the caller\'s bytes are wiped');

  assert.match(generateLogKey(), /^[A-Za-z0-9+/]{43}=$/);
});

test('seal and open: an envelope opens only at its path, with its context and key id', () => {
  const ring = Keyring.parse(generateKeyring(['k1']));
  const env = ring.seal('$.payload.BuyerEmail', JSON.stringify('a@example.com'), { context: 'c1' });
  assert.match(env, /^dpg1\.k1\./);
  assert.equal(JSON.parse(ring.open('$.payload.BuyerEmail', env, { context: 'c1' })), 'a@example.com');
  const refused = (fn, code) => assert.throws(fn, (e) => e instanceof DppError && e.code === code);
  refused(() => ring.open('$.payload.BuyerName', env, { context: 'c1' }), 'envelope_authentication_failed');
  refused(() => ring.open('$.payload.BuyerEmail', env, { context: 'c2' }), 'envelope_authentication_failed');
  refused(() => ring.open('$.payload.BuyerEmail', env.replace('dpg1.k1.', 'dpg1.k9.'), { context: 'c1' }), 'unknown_key');
  refused(() => ring.open('$.payload.BuyerEmail', 'a@example.com'), 'not_an_envelope');
  refused(() => ring.open('$.payload.BuyerEmail', env.slice(0, 20), { context: 'c1' }), 'malformed_envelope');
  // Random mode: equal values, unrelated envelopes; deterministic: equal envelopes.
  assert.notEqual(ring.seal('$.a', '1'), ring.seal('$.a', '1'));
  assert.equal(ring.seal('$.a', '1', { mode: 'deterministic' }), ring.seal('$.a', '1', { mode: 'deterministic' }));
  ring.free();
});

const POLICY = {
  version: 1,
  keys: { env: 'DPP_GUARD_KEYS' },
  routes: [
    {
      name: 'orders',
      match: { path: { prefix: '/orders/' } },
      no_store: true,
      encrypt: [{ direction: 'request', preset: 'sp-api-orders', context: 'sp-api-orders' }],
      body: { max_bytes: 65536 },
    },
  ],
};

test('a route\'s rules on every SP-API sample: PII sealed, every other byte kept, opened back exactly', () => {
  const policy = Policy.parse(JSON.stringify(POLICY));
  const ring = Keyring.parse(generateKeyring(['k1']));
  for (const [name, sample] of Object.entries(spApiSamples())) {
    const sealed = policy.protect(ring, { route: 'orders', direction: 'request', body: sample.body });
    assert.equal(sealed.action, 'encrypt');
    assert.ok(sealed.fields >= 3, `${name}: ${sealed.fields} fields`);
    assert.deepEqual(leaks(sealed.body, sample.pii), [], `${name}: PII left in clear`);
    assert.match(sealed.body, /"AmazonOrderId": "902-3159896-1390916"/);
    const opened = policy.protect(ring, { route: 'orders', direction: 'request', action: 'decrypt', body: sealed.body });
    assert.equal(opened.body, sample.body, `${name}: byte for byte`);
  }
  policy.free();
  ring.free();
});

test('a body the filter would refuse throws with the filter\'s status, reply and event', () => {
  const policy = Policy.parse(JSON.stringify({ ...POLICY, routes: [{ ...POLICY.routes[0], body: { max_bytes: 64 } }] }));
  const ring = Keyring.parse(generateKeyring(['k1']));
  const refused = (body, action, status, code) =>
    assert.throws(
      () => policy.protect(ring, { route: 'orders', action, body }),
      (e) => e instanceof DppError && e.status === status && e.code === code && e.event.startsWith('dpp_event {'),
    );
  refused('{"payload": {"BuyerEmail": ', undefined, 400, 'malformed_json');
  refused('{"payload": {"BuyerEmail": "jq7f2k9x@marketplace.example.com"}}', 'decrypt', 502, 'not_an_envelope');
  assert.throws(() => policy.protect(ring, { route: 'nope', body: '{}' }), (e) => e.code === 'no_such_route');
  // Over max_bytes is a header/buffer decision of the filter: see simulate.
  const ex = policy.simulate(
    { method: 'POST', path: '/orders/1', request_headers: { 'content-type': 'application/json' }, body: '{"x":"' + 'y'.repeat(80) + '"}' },
    { keyring: ring },
  );
  assert.equal(ex.outcome, 'refused');
  assert.equal(ex.reply.status, 413);
  assert.match(ex.events[0], /"event":"body_too_large"/);
});

test('simulate: the access record of an SP-API request carries no PII, and the MAC chain with a log key', () => {
  const policy = Policy.parse(JSON.stringify({ ...POLICY, logging: { request_headers: ['x-buyer'] } }));
  const ring = Keyring.parse(generateKeyring(['k1']));
  const sample = spApiSamples().getOrderBuyerInfo;
  const ex = policy.simulate(
    {
      method: 'POST',
      path: `${sample.path}?BuyerEmail=jq7f2k9x@marketplace.example.com`,
      request_headers: { 'content-type': 'application/json', 'x-buyer': 'jq7f2k9x@marketplace.example.com' },
      body: sample.body,
      client: '198.51.100.23:40112',
      time_unix_ms: Date.UTC(2026, 10, 20, 17, 4, 51),
    },
    { keyring: ring, logKey: generateLogKey() },
  );
  assert.equal(ex.outcome, 'forwarded');
  assert.equal(ex.matched_route, 'orders');
  assert.deepEqual(ex.response_headers, [['cache-control', 'no-store'], ['pragma', 'no-cache']]);
  assert.deepEqual(leaks(ex.body, sample.pii), []);
  const record = JSON.parse(ex.record);
  assert.equal(record.dpp_access, 1);
  assert.equal(record.time, '2026-11-20T17:04:51.000Z');
  assert.equal(record.actions.fields_encrypted, ex.fields);
  assert.ok(record.mac && record.prev, 'sealed into the chain');
  assert.deepEqual(leaks(ex.record, [...sample.pii, '198.51.100.23']), [], ex.record);
  assert.match(record.headers['x-buyer'], /^p:/, 'the logged header is there, as a keyed pseudonym');
});
