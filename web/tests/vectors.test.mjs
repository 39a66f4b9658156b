// Known answers in the JS runtime: the RFC 8452 AES-256-GCM-SIV vectors
// (core/testdata, shared with core's own test) through the cipher compiled
// to WebAssembly, and the project's envelope vectors through the package.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { aes256GcmSiv, DppError, Keyring, Policy } from 'dpp-guard';
import { hex, readJson, unhex } from './support/index.mjs';

const rfc = readJson('core/testdata/rfc8452-aes-256-gcm-siv.json');

test('RFC 8452 Appendix C.2 vectors: encrypt gives the RFC result, decrypt the plaintext', () => {
  assert.ok(rfc.vectors.length >= 15, 'the shared file holds the RFC vectors');
  for (const [i, v] of rfc.vectors.entries()) {
    const sealed = aes256GcmSiv.encrypt(unhex(v.key), unhex(v.nonce), unhex(v.aad), unhex(v.plaintext));
    assert.equal(hex(sealed), v.result, `vector ${i}: encrypt`);
    const opened = aes256GcmSiv.decrypt(unhex(v.key), unhex(v.nonce), unhex(v.aad), unhex(v.result));
    assert.equal(hex(opened), v.plaintext, `vector ${i}: decrypt`);
  }
});

test('RFC 8452 vectors: a changed byte of ciphertext, tag or aad fails authentication', () => {
  for (const [i, v] of rfc.vectors.entries()) {
    const ct = unhex(v.result);
    for (const at of [0, ct.length - 1]) {
      const bad = ct.slice();
      bad[at] ^= 1;
      assert.throws(
        () => aes256GcmSiv.decrypt(unhex(v.key), unhex(v.nonce), unhex(v.aad), bad),
        (e) => e instanceof DppError && e.code === 'aead_error',
        `vector ${i}: byte ${at}`,
      );
    }
    const aad = unhex(v.aad + '00');
    assert.throws(() => aes256GcmSiv.decrypt(unhex(v.key), unhex(v.nonce), aad, ct), DppError, `vector ${i}: aad`);
  }
});

test('the AEAD key bytes passed in are wiped', () => {
  const v = rfc.vectors[1];
  const key = unhex(v.key);
  aes256GcmSiv.encrypt(key, unhex(v.nonce), unhex(v.aad), unhex(v.plaintext));
  assert.deepEqual([...key], new Array(32).fill(0));
});

// The project's envelope vectors (core/testdata/envelope-vectors.json,
// shared with core's and the CLI's tests): every envelope opens to its
// plaintext at its path, direction, context and record; its document
// decrypts under its rule through the filter's rewrite; deterministic ones
// are sealed byte for byte; anything moved or changed fails.
const envelopeVectors = readJson('core/testdata/envelope-vectors.json').vectors;

function at(v) {
  return { direction: v.direction, context: v.context, bound: v.bound.map((b) => [b.name, JSON.parse(b.value)]) };
}

function ringFor(v) {
  // Sealing uses the primary key: make the vector's key primary.
  return Keyring.parse(v.keyring.replace(/primary=\S+/, `primary=${v.key_id}`));
}

test('envelope vectors: each envelope opens to its plaintext where it was sealed', () => {
  assert.ok(envelopeVectors.length >= 5);
  for (const v of envelopeVectors) {
    const ring = ringFor(v);
    assert.equal(ring.open(v.path, v.envelope, at(v)), v.plaintext, v.name);
    ring.free();
  }
});

test('envelope vectors: each document decrypts under its rule, as the filter does', () => {
  for (const v of envelopeVectors) {
    const policy = Policy.parse(
      JSON.stringify({ version: 1, keys: { env: 'DPP_GUARD_KEYS' }, routes: [{ name: 'v', decrypt: [v.rule] }] }),
    );
    const ring = ringFor(v);
    const out = policy.protect(ring, { route: 'v', direction: v.direction, body: v.document });
    assert.equal(out.body, v.decrypted, v.name);
    assert.equal(out.fields, 1, v.name);
    // And the rule's encrypt twin seals it back into a document that decrypts the same.
    const sealed = policy.protect(ring, { route: 'v', direction: v.direction, action: 'encrypt', body: v.decrypted });
    assert.equal(policy.protect(ring, { route: 'v', direction: v.direction, body: sealed.body }).body, v.decrypted);
    ring.free();
    policy.free();
  }
});

test('envelope vectors: deterministic envelopes are sealed byte for byte, random ones differ each time', () => {
  let deterministic = 0;
  for (const v of envelopeVectors) {
    const ring = ringFor(v);
    const opts = { ...at(v), mode: v.mode, blindIndex: v.blind_index };
    const sealed = ring.seal(v.path, v.plaintext, opts);
    if (v.mode === 'deterministic') {
      deterministic++;
      assert.equal(sealed, v.envelope, v.name);
    } else {
      assert.notEqual(sealed, v.envelope, v.name);
      assert.equal(sealed.split('.').length, v.envelope.split('.').length, `${v.name}: same shape`);
    }
    assert.equal(ring.open(v.path, sealed, at(v)), v.plaintext, v.name);
    ring.free();
  }
  assert.ok(deterministic >= 1, 'the file has deterministic vectors');
});

test('envelope vectors: a changed byte, another direction, context, record or path fails', () => {
  const refused = (fn, code, what) =>
    assert.throws(fn, (e) => e instanceof DppError && e.code === code, what);
  for (const v of envelopeVectors) {
    const ring = ringFor(v);
    const pos = at(v);
    const parts = v.envelope.split('.');
    const payload = parts[2];
    const flipped = payload.slice(0, 20) + (payload[20] === 'A' ? 'B' : 'A') + payload.slice(21);
    const changed = [...parts.slice(0, 2), flipped, ...parts.slice(3)].join('.');
    refused(() => ring.open(v.path, changed, pos), 'envelope_authentication_failed', `${v.name}: byte`);
    const other = v.direction === 'request' ? 'response' : 'request';
    refused(() => ring.open(v.path, v.envelope, { ...pos, direction: other }), 'envelope_authentication_failed', `${v.name}: direction`);
    refused(() => ring.open(v.path, v.envelope, { ...pos, context: pos.context + 'x' }), 'envelope_authentication_failed', `${v.name}: context`);
    refused(() => ring.open(`${v.path}x`, v.envelope, pos), 'envelope_authentication_failed', `${v.name}: path`);
    if (pos.bound.length) {
      const moved = pos.bound.map(([n, value], i) => [n, i === 0 ? `${value}0` : value]);
      refused(() => ring.open(v.path, v.envelope, { ...pos, bound: moved }), 'envelope_authentication_failed', `${v.name}: record`);
    }
    refused(() => ring.open(v.path, v.envelope.replace(`dpg1.${v.key_id}.`, 'dpg1.k9.'), pos), 'unknown_key', `${v.name}: key`);
    ring.free();
  }
});
