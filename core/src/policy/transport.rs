//! The `transport` section: encryption in transit.
//!
//! ```json
//! "transport": {
//!   "upstream": {
//!     "min_tls_version": "TLSv1.2",
//!     "connect_wait_ms": 5000,
//!     "clusters": {
//!       "billing": { "pin": { "uri_san": "spiffe://corp/billing" } },
//!       "legacy":  { "exempt": { "reason": "vendor VPN, ticket SEC-12" } }
//!     }
//!   },
//!   "downstream": { "trusted_tls_terminator": false }
//! }
//! ```
//!
//! Everything has a safe default: an absent section means "every upstream
//! must speak TLS 1.2 or later, no exemptions, every protected route needs a
//! TLS downstream connection".

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::PolicyError;

// ---- wire shape -----------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportDoc {
    #[serde(default)]
    pub upstream: UpstreamDoc,
    #[serde(default)]
    pub downstream: DownstreamDoc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDoc {
    pub min_tls_version: Option<String>,
    pub connect_wait_ms: Option<u64>,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterDoc>,
    /// `report`: refusals are logged (flagged `report_only`), the request goes on.
    pub mode: Option<super::Mode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDoc {
    pub pin: Option<PinDoc>,
    pub exempt: Option<ExemptDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinDoc {
    pub uri_san: Option<String>,
    pub dns_san: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptDoc {
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamDoc {
    #[serde(default)]
    pub trusted_tls_terminator: bool,
}

// ---- compiled -------------------------------------------------------------

/// A TLS protocol version, ordered oldest to newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl TlsVersion {
    /// Parses the names Envoy reports in `upstream.tls_version` /
    /// `connection.tls_version` (BoringSSL's `SSL_get_version`).
    pub fn from_envoy(name: &str) -> Option<TlsVersion> {
        match name {
            "TLSv1" | "TLSv1.0" => Some(TlsVersion::V1_0),
            "TLSv1.1" => Some(TlsVersion::V1_1),
            "TLSv1.2" => Some(TlsVersion::V1_2),
            "TLSv1.3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_0 => "TLSv1",
            TlsVersion::V1_1 => "TLSv1.1",
            TlsVersion::V1_2 => "TLSv1.2",
            TlsVersion::V1_3 => "TLSv1.3",
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cluster name as Envoy reports it in `xds.cluster_name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClusterName(String);

impl ClusterName {
    pub fn new(name: impl Into<String>) -> Self {
        ClusterName(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the upstream's certificate must show. Every field that is set must
/// match; Envoy exposes the first URI SAN and the first DNS SAN only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPin {
    pub uri_san: Option<String>,
    pub dns_san: Option<String>,
    /// Lower-case hex SHA-256 of the DER certificate.
    pub sha256: Option<String>,
}

/// A per-cluster rule of the upstream guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterRule {
    /// TLS required and the peer identity must match.
    Pin(PeerPin),
    /// Plaintext allowed by explicit operator decision; logged at start.
    Exempt { reason: String },
}

/// Options of the upstream TLS guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTransport {
    pub min_tls_version: TlsVersion,
    /// How long a request waits for its new upstream connection before the
    /// guard refuses it.
    pub connect_wait: Duration,
    pub clusters: BTreeMap<ClusterName, ClusterRule>,
    /// `Report`: the guard logs what it would refuse and lets it go.
    pub mode: super::Mode,
}

/// Options for downstream connections on protected routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownstreamTransport {
    /// The listener sits behind a TLS terminator the operator trusts (a
    /// cloud load balancer, an ingress): plaintext on this hop is accepted.
    pub trusted_tls_terminator: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub upstream: UpstreamTransport,
    pub downstream: DownstreamTransport,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            upstream: UpstreamTransport {
                min_tls_version: DEFAULT_MIN_TLS,
                connect_wait: Duration::from_millis(DEFAULT_CONNECT_WAIT_MS),
                clusters: BTreeMap::new(),
                mode: super::Mode::Enforce,
            },
            downstream: DownstreamTransport::default(),
        }
    }
}

/// The policy requires "strong" encryption in transit; TLS 1.2 is the
/// oldest version without known practical protocol breaks.
pub const DEFAULT_MIN_TLS: TlsVersion = TlsVersion::V1_2;
/// Envoy's default cluster connect_timeout is 5 s; waiting as long means the
/// guard never refuses a connect that Envoy itself would still accept.
pub const DEFAULT_CONNECT_WAIT_MS: u64 = 5000;
/// A request parked longer than this holds buffers for no good reason.
pub const MAX_CONNECT_WAIT_MS: u64 = 60_000;

impl Transport {
    /// `mode`: the policy's; the upstream guard follows it unless
    /// `transport.upstream.mode` says otherwise.
    pub(super) fn compile(
        doc: Option<TransportDoc>,
        mode: super::Mode,
    ) -> Result<Transport, PolicyError> {
        let Some(doc) = doc else {
            let mut t = Transport::default();
            t.upstream.mode = mode;
            return Ok(t);
        };
        Ok(Transport {
            upstream: compile_upstream(doc.upstream, mode)?,
            downstream: DownstreamTransport {
                trusted_tls_terminator: doc.downstream.trusted_tls_terminator,
            },
        })
    }
}

fn compile_upstream(
    doc: UpstreamDoc,
    policy_mode: super::Mode,
) -> Result<UpstreamTransport, PolicyError> {
    const AT: &str = "transport.upstream";
    let min_tls_version = match doc.min_tls_version.as_deref() {
        None => DEFAULT_MIN_TLS,
        Some(v) => match TlsVersion::from_envoy(v) {
            Some(t @ (TlsVersion::V1_2 | TlsVersion::V1_3)) => t,
            _ => {
                return Err(PolicyError::new(
                    format!("{AT}.min_tls_version"),
                    format!("{v:?} is not allowed; use \"TLSv1.2\" or \"TLSv1.3\""),
                ))
            }
        },
    };
    let wait_ms = doc.connect_wait_ms.unwrap_or(DEFAULT_CONNECT_WAIT_MS);
    if wait_ms == 0 || wait_ms > MAX_CONNECT_WAIT_MS {
        return Err(PolicyError::new(
            format!("{AT}.connect_wait_ms"),
            format!("{wait_ms} is out of range 1..={MAX_CONNECT_WAIT_MS}"),
        ));
    }
    let mut clusters = BTreeMap::new();
    for (name, c) in doc.clusters {
        let at = format!("{AT}.clusters.{name}");
        if name.is_empty() {
            return Err(PolicyError::new(at, "cluster name must not be empty"));
        }
        let rule = match (c.pin, c.exempt) {
            (Some(_), Some(_)) => {
                return Err(PolicyError::new(
                    at,
                    "`pin` and `exempt` exclude each other: a pinned cluster must use TLS",
                ))
            }
            (None, None) => {
                return Err(PolicyError::new(at, "needs either `pin` or `exempt`"));
            }
            (Some(pin), None) => ClusterRule::Pin(compile_pin(pin, &format!("{at}.pin"))?),
            (None, Some(ex)) => {
                if ex.reason.trim().is_empty() {
                    return Err(PolicyError::new(
                        format!("{at}.exempt.reason"),
                        "an exemption must say why (it is logged at every start)",
                    ));
                }
                ClusterRule::Exempt { reason: ex.reason }
            }
        };
        clusters.insert(ClusterName(name), rule);
    }
    Ok(UpstreamTransport {
        min_tls_version,
        connect_wait: Duration::from_millis(wait_ms),
        clusters,
        mode: doc.mode.unwrap_or(policy_mode),
    })
}

fn compile_pin(doc: PinDoc, at: &str) -> Result<PeerPin, PolicyError> {
    let non_empty = |v: Option<String>, field: &str| -> Result<Option<String>, PolicyError> {
        match v {
            Some(s) if s.is_empty() => Err(PolicyError::new(
                format!("{at}.{field}"),
                "must not be empty",
            )),
            other => Ok(other),
        }
    };
    let uri_san = non_empty(doc.uri_san, "uri_san")?;
    let dns_san = non_empty(doc.dns_san, "dns_san")?;
    let sha256 = match doc.sha256 {
        None => None,
        Some(h) => {
            // Accept the colon-separated form openssl prints, compare as
            // plain lower-case hex, which is what Envoy reports.
            let hex: String = h.chars().filter(|c| *c != ':').collect::<String>();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PolicyError::new(
                    format!("{at}.sha256"),
                    "must be the 64 hex digits of the certificate's SHA-256",
                ));
            }
            Some(hex.to_ascii_lowercase())
        }
    };
    if uri_san.is_none() && dns_san.is_none() && sha256.is_none() {
        return Err(PolicyError::new(
            at,
            "a pin needs at least one of `uri_san`, `dns_san`, `sha256`",
        ));
    }
    Ok(PeerPin {
        uri_san,
        dns_san,
        sha256,
    })
}
