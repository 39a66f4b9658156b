// Types of the dpp-guard package (Node 20+ and browsers, ESM).

/** Any refusal by dpp-guard. */
export class DppError extends Error {
  /** Stable code: `envelope_authentication_failed`, `unknown_key`, `not_an_envelope`, `invalid_keyring`, ... */
  readonly code: string;
  /** Refused bodies: the HTTP status the filter answers with (413, 415, 400, 500, 502). */
  readonly status?: number;
  /** Refused bodies: the filter's JSON error reply. */
  readonly reply?: string;
  /** Refused bodies: the security event line the filter logs (`dpp_event {...}`). */
  readonly event?: string;
}

/** An invalid policy, in the words the plugin logs. */
export class PolicyError extends DppError {
  readonly code: 'invalid_policy';
  /** Path of the offending field, e.g. `routes[0].match.path.regex`; `.` for the document. */
  readonly field: string;
  /** What is wrong with it. */
  readonly problem: string;
}

export type Direction = 'request' | 'response';
export type Action = 'encrypt' | 'decrypt';

export interface RouteSummary {
  name: string;
  kill_switch: boolean;
  no_store: boolean;
  /** What the route does to request bodies, if anything. */
  request?: Action;
  /** What the route does to response bodies, if anything. */
  response?: Action;
  max_body_bytes: number;
}

export interface PolicySummary {
  /** SHA-256 (hex) of the document, as in the filter's `policy_loaded` event. */
  sha256: string;
  routes: RouteSummary[];
  /** Where the filter reads the keyring from: `env NAME` or `inline (testing only)`. */
  keys?: string;
}

export type PolicyCheck =
  | ({ ok: true } & PolicySummary)
  | {
      ok: false;
      error: {
        code: 'invalid_policy';
        /** The plugin's log line: ``invalid policy: field `routes[0].name`: must not be empty``. */
        message: string;
        field: string;
        problem: string;
      };
    };

/** Checks a policy exactly as the filter does when Envoy loads it. Never throws for an invalid policy. */
export function checkPolicy(json: string): PolicyCheck;

/** JSON values (what `JSON.stringify` accepts). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [name: string]: JsonValue };

/** What an envelope binds besides its path; it opens only with the same values. */
export interface OpenOptions {
  /** Which message carries it. Default `request`. */
  direction?: Direction;
  /** The rule's `context`. Default empty. */
  context?: string;
  /**
   * The record's context fields (the rule's `context_fields`), in the rule's
   * order: `{AmazonOrderId: '902-3159896-1390916'}` or `[['AmazonOrderId', '902-...']]`.
   */
  bound?: Record<string, JsonValue> | [string, JsonValue][];
}

export interface SealOptions extends OpenOptions {
  /** `random` (default): equal values give unrelated envelopes. `deterministic`: equal values give equal envelopes. */
  mode?: 'random' | 'deterministic';
  /** Append a keyed blind index (equality lookups on random envelopes). */
  blindIndex?: boolean;
}

export class Keyring {
  private constructor();
  /**
   * Parses a keyring text (`k1=<base64url> k2=<base64url> primary=k2`). A
   * Uint8Array (UTF-8) is wiped after parsing. Throws DppError (`invalid_keyring`);
   * the message never contains key text.
   */
  static parse(text: string | Uint8Array): Keyring;
  readonly ids: string[];
  readonly primary: string;
  /**
   * Seals one JSON value (its exact text, e.g. `JSON.stringify(value)`) found
   * at the canonical `path` (`$.payload.BuyerEmail`, arrays as `[*]`) with
   * the primary key. Returns the envelope (`dpg1.<key id>.<...>`).
   */
  seal(path: string, json: string | Uint8Array, options?: SealOptions): string;
  /** Opens an envelope found at `path` with the options it was sealed with: the original JSON text. Throws DppError. */
  open(path: string, envelope: string, options?: OpenOptions): string;
  /** Wipes the keys; the keyring cannot be used afterwards. */
  free(): void;
}

export interface Protected {
  action: Action;
  /** Fields sealed or opened. */
  fields: number;
  /** False when the rules selected nothing (the body passes as it was). */
  changed: boolean;
  /** The body as the filter forwards it. */
  body: string;
}

export interface ProtectArgs {
  /** Policy route name. */
  route: string;
  direction?: Direction;
  /** Run the route's fields with this action instead of the policy's. */
  action?: Action;
  body: string | Uint8Array;
}

/** A request (and, for `direction: "response"`, its response) as data. */
export interface Sample {
  method?: string;
  /** `:path`, query string included. */
  path: string;
  /** `:authority`. */
  host?: string;
  /** Envoy's route name (`xds.route_name`), for `match.route_name`. */
  envoy_route?: string;
  /** Run this policy route's rules (default: the route the request matches, as in Envoy). */
  route?: string;
  direction?: Direction;
  action?: Action;
  request_headers?: Record<string, string>;
  response_headers?: Record<string, string>;
  /** The body of `direction`. */
  body?: string;
  /** Downstream TLS version as Envoy reports it; `null` for plaintext. Default `TLSv1.3`. */
  tls?: string | null;
  /** The upstream's status. */
  status?: number;
  /** Client address, `ip:port`. */
  client?: string;
  time_unix_ms?: number;
  /** The access-log chain's worker id. */
  worker?: string;
}

export interface Exchange {
  /** The route Envoy matches for this request, if any. */
  matched_route: string | null;
  /** The route whose rules ran. */
  route: string | null;
  outcome: 'unprotected' | 'forwarded' | 'refused';
  notes?: string[];
  direction: Direction;
  action?: Action;
  fields: number;
  changed: boolean;
  /** The body as forwarded; null when refused. */
  body: string | null;
  /** The filter's own answer when it refused. */
  reply: { status: number; code: string; body: string } | null;
  /** Request headers the filter replaces (`:path` in its normal form under `requests.non_normal_path: normalize`). */
  request_headers_set: [string, string][];
  /** Response headers the route sets (`cache-control: no-store`, ...). */
  response_headers: [string, string][];
  /** Security event lines, `dpp_event {...}`. */
  events: string[];
  /** The scrubbed access record, as the filter publishes it; null when `logging.access_records` leaves it out. */
  record: string | null;
  /** True when the record carries the MAC chain (a log key was given). */
  sealed: boolean;
}

export class Policy {
  private constructor();
  /** Parses and checks a policy. Throws PolicyError naming the field. */
  static parse(json: string): Policy;
  readonly sha256: string;
  readonly routes: RouteSummary[];
  readonly keys?: string;
  /** A route's field rules on a complete body. Throws DppError when the filter would refuse it. */
  protect(keyring: Keyring, args: ProtectArgs): Protected;
  /** One sample exchange under the policy. */
  simulate(sample: Sample | string, options?: { keyring?: Keyring; logKey?: string }): Exchange;
  free(): void;
}

/** A new keyring entry `ID=<256-bit key, base64url>` from crypto.getRandomValues. */
export function generateKeyEntry(id: string): string;
/** A new keyring text with one fresh key per id; the first id is primary. */
export function generateKeyring(ids?: string[] | string): string;
/** A new log key (base64 of 32 random bytes). */
export function generateLogKey(): string;

/** AEAD_AES_256_GCM_SIV (RFC 8452), the cipher of every envelope. Key bytes are wiped. */
export const aes256GcmSiv: {
  /** ciphertext || 16-byte tag */
  encrypt(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** Throws DppError (`aead_error`) when authentication fails. */
  decrypt(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Uint8Array;
};
