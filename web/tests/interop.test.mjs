// Interop both ways with the other hosts of the same core: what the package
// seals, `dpp-guard decrypt` and the filter in a real Envoy 1.40 open; what
// they seal, the package opens; a changed byte fails in each.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { checkPolicy, DppError, generateKeyring, Keyring, Policy } from 'dpp-guard';
import {
  changeOneByte,
  cli,
  envelopes,
  leaks,
  policyFile,
  readJson,
  request,
  scratch,
  spApiSamples,
  startEnvoy,
} from './support/index.mjs';

// The shipped hop policy's request rule: the SP-API preset, bound to the order id.
const RULE = readJson('envoy/policies/hop-a-encrypt.json').routes[0].encrypt[0];
// One Envoy, two routes: /seal/ encrypts request PII (the filter seals),
// /open/ decrypts it (the filter opens). The echo service answers with the
// body it received, so a response shows what the filter forwarded.
const POLICY = {
  version: 1,
  keys: { env: 'DPP_GUARD_KEYS' },
  routes: [
    { name: 'seal', match: { path: { prefix: '/seal/' } }, encrypt: [RULE] },
    { name: 'open', match: { path: { prefix: '/open/' } }, decrypt: [RULE] },
  ],
};
const JSON_HEADERS = { 'content-type': 'application/json' };

const keys = generateKeyring(['k1']);
const samples = spApiSamples();
const sample = samples.getOrder;
const policy = Policy.parse(JSON.stringify(POLICY));
const ring = Keyring.parse(keys);

/** The package seals the sample's PII with route `seal`'s rules. */
function packageSeal(body = sample.body) {
  const out = policy.protect(ring, { route: 'seal', direction: 'request', body });
  assert.ok(out.fields >= 3, `PII fields sealed: ${out.fields}`);
  return out.body;
}

/** The package opens with route `open`'s rules (the filter's decrypt rule). */
function packageOpen(body) {
  return policy.protect(ring, { route: 'open', direction: 'request', body }).body;
}

describe('the dpp-guard CLI', () => {
  const dir = scratch();
  const file = policyFile(dir, 'policy.json', POLICY);
  const run = (action, route, input) =>
    cli([action, '--policy', file, '--route', route, '--direction', 'request', '-'], { input, keys });

  test('opens what the package sealed, byte for byte', () => {
    const sealed = packageSeal();
    assert.deepEqual(leaks(sealed, sample.pii), []);
    const out = run('decrypt', 'open', sealed);
    assert.equal(out.status, 0, out.stderr);
    assert.equal(out.stdout, sample.body);
  });

  test('refuses a package envelope with one changed byte', () => {
    const sealed = packageSeal();
    const out = run('decrypt', 'open', changeOneByte(sealed, envelopes(sealed)[3]));
    assert.equal(out.status, 1);
    assert.match(out.stderr, /envelope_rejected \(envelope_authentication_failed\)/);
    assert.equal(out.stdout, '', 'nothing decrypted is printed');
  });

  test('seals what the package opens; a changed byte fails in the package', () => {
    const out = run('encrypt', 'seal', sample.body);
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(leaks(out.stdout, sample.pii), []);
    assert.equal(packageOpen(out.stdout), sample.body);
    const changed = changeOneByte(out.stdout, envelopes(out.stdout)[0]);
    assert.throws(
      () => packageOpen(changed),
      (e) => e instanceof DppError && e.code === 'envelope_authentication_failed' && e.status === 502,
    );
  });
});

describe('the filter in Envoy', () => {
  let envoy;
  before(async () => {
    envoy = await startEnvoy(POLICY, keys);
  });
  after(async () => {
    await envoy?.stop();
  });

  test('opens what the package sealed: the service receives the original body', async () => {
    for (const [name, s] of Object.entries(samples)) {
      const sealed = packageSeal(s.body);
      assert.deepEqual(leaks(sealed, s.pii), [], name);
      const r = await request(envoy, 'POST', `/open${s.path}`, { body: sealed, headers: JSON_HEADERS });
      assert.equal(r.status, 200, `${name}: ${r.body}`);
      assert.equal(r.body, s.body, `${name}: byte for byte at the service`);
    }
  });

  test('refuses a package envelope with one changed byte: 502, nothing forwarded', async () => {
    const sealed = packageSeal();
    for (const env of envelopes(sealed).slice(0, 3)) {
      const r = await request(envoy, 'POST', `/open${sample.path}`, {
        body: changeOneByte(sealed, env),
        headers: JSON_HEADERS,
      });
      assert.equal(r.status, 502, r.body);
      assert.equal(JSON.parse(r.body).error, 'envelope_rejected');
      assert.deepEqual(leaks(r.body, sample.pii), []);
    }
    assert.match(envoy.log(), /"event":"envelope_rejected".*"detail":"request: envelope_authentication_failed"/);
  });

  test('seals what the package opens; a changed byte fails in the package', async () => {
    const r = await request(envoy, 'POST', `/seal${sample.path}`, { body: sample.body, headers: JSON_HEADERS });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(leaks(r.body, sample.pii), [], 'the service received envelopes');
    assert.ok(envelopes(r.body).length >= 20);
    assert.equal(packageOpen(r.body), sample.body, 'the package restores the exact body');
    assert.throws(
      () => packageOpen(changeOneByte(r.body, envelopes(r.body)[1])),
      (e) => e instanceof DppError && e.code === 'envelope_authentication_failed',
    );
  });
});

test('an invalid policy: the plugin in Envoy logs the same field and message the package reports', async () => {
  const bad = { ...POLICY, routes: [{ ...POLICY.routes[0], match: { path: { regex: '([a-z]+' } } }] };
  const check = checkPolicy(JSON.stringify(bad));
  assert.equal(check.error.field, 'routes[0].match.path.regex');
  const envoy = await startEnvoy(bad, keys);
  try {
    const r = await request(envoy, 'POST', '/seal/1', { body: sample.body, headers: JSON_HEADERS });
    assert.equal(r.status, 500, 'the refused plugin fails closed');
    const line = envoy.log().split('\n').find((l) => l.includes('invalid policy'));
    assert.ok(line, 'the plugin logged the refusal');
    assert.ok(line.includes(`dpp-guard: ${check.error.message}`), `${line}\n!= ${check.error.message}`);
  } finally {
    await envoy.stop();
  }
});
