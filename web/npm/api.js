// The package's API over the wasm-bindgen module. No decision is made here:
// every function calls dpp-guard's Rust core (the same code as the Envoy
// filter and the dpp-guard CLI) and turns its JSON answer into objects and
// typed errors. index.js (browsers, bundlers) and node.js (Node) load the
// WebAssembly module, then re-export this file.

import * as raw from './wasm/dpp_guard_web.js';

/** Any refusal by dpp-guard: `code` is stable (`envelope_authentication_failed`, ...). */
export class DppError extends Error {
  constructor(problem) {
    super(problem.message);
    this.name = 'DppError';
    this.code = problem.code;
    // Refused bodies: the filter's HTTP status, its JSON reply, its event line.
    if (problem.status !== undefined) this.status = problem.status;
    if (problem.reply !== undefined) this.reply = problem.reply;
    if (problem.event !== undefined) this.event = problem.event;
  }
}

/** An invalid policy. `field` is the path the plugin names (`routes[0].match.path.regex`). */
export class PolicyError extends DppError {
  constructor(problem) {
    super(problem);
    this.name = 'PolicyError';
    this.field = problem.field;
    this.problem = problem.problem;
  }
}

function unwrap(text) {
  const out = JSON.parse(text);
  if (out.ok === true) {
    delete out.ok;
    return out;
  }
  if (out.ok === false && out.error) {
    throw out.error.code === 'invalid_policy' ? new PolicyError(out.error) : new DppError(out.error);
  }
  throw new Error('dpp-guard: unexpected answer from the WebAssembly module');
}

// wasm-bindgen's JsError surfaces as an Error whose message is the Rust text.
function rethrow(e, code) {
  if (e instanceof DppError) throw e;
  throw new DppError({ code, message: e && e.message ? e.message : String(e) });
}

const encoder = new TextEncoder();

/**
 * What an envelope's authenticated data binds besides the path: the
 * direction, the rule's context and the record's context fields. `bound`
 * is `{name: value}` (JS values, in the order of the rule's
 * `context_fields`) or `[[name, value], ...]`.
 */
function position(options) {
  const bound = Array.isArray(options.bound) ? options.bound : Object.entries(options.bound ?? {});
  return {
    direction: options.direction ?? 'request',
    context: options.context ?? '',
    bound: bound.map(([name, value]) => [String(name), JSON.stringify(value)]),
  };
}

function bytes(body) {
  if (typeof body === 'string') return encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  throw new TypeError('body must be a string or a Uint8Array');
}

/**
 * Checks a policy document exactly as the filter does when Envoy loads it.
 * Never throws for an invalid policy: returns `{ok: false, error}`.
 */
export function checkPolicy(json) {
  return JSON.parse(raw.checkPolicy(String(json)));
}

/** A keyring: `k1=<base64url 32 bytes> k2=... primary=k2`, as `dpp-guard keygen` prints. */
export class Keyring {
  #inner;

  constructor(inner) {
    this.#inner = inner;
  }

  /**
   * Parses a keyring. A Uint8Array (UTF-8) is wiped after parsing; a string
   * cannot be wiped by JavaScript, its copy in WebAssembly memory is.
   */
  static parse(text) {
    try {
      if (text instanceof Uint8Array) return new Keyring(raw.Keyring.fromBytes(text));
      return new Keyring(new raw.Keyring(String(text)));
    } catch (e) {
      rethrow(e, 'invalid_keyring');
    }
  }

  /** Key ids, in keyring order. */
  get ids() {
    return this.#live().ids();
  }

  /** The key new envelopes are sealed with. */
  get primary() {
    return this.#live().primary();
  }

  /**
   * Seals the JSON value `json` (its exact text) found at `path` (the
   * canonical path, `$.payload.BuyerEmail`) with the primary key. Returns
   * the envelope string. Options: where the value sits (`direction`,
   * `context`, `bound`) and how to seal it (`mode`, `blindIndex`).
   */
  seal(path, json, options = {}) {
    const opts = {
      ...position(options),
      mode: options.mode ?? 'random',
      blind_index: Boolean(options.blindIndex),
    };
    return unwrap(raw.sealValue(this.#live(), String(path), bytes(json), JSON.stringify(opts))).envelope;
  }

  /**
   * Opens an envelope found at `path`, sealed for the same `direction`,
   * `context` and `bound` fields: the original JSON value's text. Throws
   * DppError.
   */
  open(path, envelope, options = {}) {
    return unwrap(raw.openEnvelope(this.#live(), String(path), String(envelope), JSON.stringify(position(options))))
      .value;
  }

  /** Wipes the keys. The keyring is unusable afterwards. */
  free() {
    if (this.#inner) {
      this.#inner.free();
      this.#inner = undefined;
    }
  }

  /** @internal */
  get _raw() {
    return this.#live();
  }

  #live() {
    if (!this.#inner) throw new DppError({ code: 'freed', message: 'this keyring was freed' });
    return this.#inner;
  }
}

/** A checked policy, compiled once. */
export class Policy {
  #inner;

  constructor(inner, summary) {
    this.#inner = inner;
    /** SHA-256 of the document, as in the filter's `policy_loaded` event. */
    this.sha256 = summary.sha256;
    /** Routes: name, kill_switch, no_store, request/response action, max_body_bytes. */
    this.routes = summary.routes;
    /** Where the filter reads the keyring from. */
    this.keys = summary.keys;
  }

  /** Parses a policy; throws PolicyError naming the field. */
  static parse(json) {
    let inner;
    try {
      inner = raw.Policy.parse(String(json));
    } catch {
      // The structured error (field, problem) of the same check.
      const check = JSON.parse(raw.checkPolicy(String(json)));
      throw new PolicyError(check.error);
    }
    return new Policy(inner, JSON.parse(inner.summary()));
  }

  /**
   * Runs a route's field rules for one direction on a complete body: the
   * filter's rewrite, every unselected byte kept. `action` runs the same
   * fields the other way (`decrypt` what an encrypt rule sealed), as
   * `dpp-guard decrypt` does. Throws DppError (with the filter's status,
   * reply and event) when the filter would refuse the body.
   */
  protect(keyring, { route, direction = 'request', action, body }) {
    return unwrap(
      this.#live().protect(keyring._raw, String(route), String(direction), action ?? undefined, bytes(body)),
    );
  }

  /**
   * One sample exchange: which route Envoy matches, what the filter does
   * to the body, its events and the access record as it would be logged.
   */
  simulate(sample, { keyring, logKey } = {}) {
    const text = typeof sample === 'string' ? sample : JSON.stringify(sample);
    const policy = this.#live();
    return unwrap(
      keyring
        ? policy.simulate(text, keyring._raw, logKey ?? undefined)
        : policy.simulateWithoutKeys(text, logKey ?? undefined),
    );
  }

  free() {
    if (this.#inner) {
      this.#inner.free();
      this.#inner = undefined;
    }
  }

  #live() {
    if (!this.#inner) throw new DppError({ code: 'freed', message: 'this policy was freed' });
    return this.#inner;
  }
}

/** A new keyring entry `ID=<256-bit key>` from crypto.getRandomValues. */
export function generateKeyEntry(id) {
  try {
    return raw.generateKeyEntry(String(id));
  } catch (e) {
    rethrow(e, 'invalid_key_id');
  }
}

/** A new keyring text with one fresh key per id; the first is primary. */
export function generateKeyring(ids = ['k1']) {
  const list = Array.isArray(ids) ? ids : [ids];
  if (list.length === 0) throw new DppError({ code: 'invalid_key_id', message: 'no key id given' });
  return [...list.map(generateKeyEntry), `primary=${list[0]}`].join(' ');
}

/** A new log key (base64, 32 bytes): pseudonyms and the access-record MAC chain. */
export function generateLogKey() {
  return raw.generateLogKey();
}

/** AEAD_AES_256_GCM_SIV (RFC 8452) as the keyring uses it. Key bytes are wiped. */
export const aes256GcmSiv = {
  encrypt(key, nonce, aad, plaintext) {
    try {
      return raw.aes256GcmSivEncrypt(key, nonce, aad, plaintext);
    } catch (e) {
      rethrow(e, 'aead_error');
    }
  },
  decrypt(key, nonce, aad, ciphertext) {
    try {
      return raw.aes256GcmSivDecrypt(key, nonce, aad, ciphertext);
    } catch (e) {
      rethrow(e, 'aead_error');
    }
  },
};
