// Known answers in the JS runtime: the RFC 8452 AES-256-GCM-SIV vectors
// (core/testdata, shared with core's own test) through the cipher compiled
// to WebAssembly, and the project's envelope vectors through the package.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { aes256GcmSiv, DppError, Keyring } from 'dpp-guard';
import { hex, readJson, ROOT, unhex } from './support/index.mjs';

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

// The envelope known answer of core/src/crypto/envelope/tests.rs: a
// deterministic envelope with a blind index under a fixed key.
const K1 = 'k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8';
const K2 = 'k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8';

test('envelope known answer: the package seals the byte-identical envelope and opens it', () => {
  const known = readFileSync(join(ROOT, 'core/src/crypto/envelope/known_answer.txt'), 'utf8').trim();
  const ring = Keyring.parse(`${K1} ${K2} primary=k1`);
  const env = ring.seal('$.payload.BuyerEmail', '"buyer@example.com"', {
    mode: 'deterministic',
    context: 'tenant-a',
    blindIndex: true,
  });
  assert.equal(env, known);
  assert.equal(ring.open('$.payload.BuyerEmail', known, { context: 'tenant-a' }), '"buyer@example.com"');
  ring.free();
});
