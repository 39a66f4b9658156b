//! Access management and least privilege (issue 13): who the caller is
//! (principal), what it may do (roles, routes, fields), where it may call
//! from (client address allowlists), and lockout after repeated failures.
//!
//! This module holds the policy sections (`principals`, `client_address`,
//! `lockout`, a route's `access`, a decrypt rule's `reveal_to` /
//! `otherwise`) and the pure decisions over facts. The stream wiring
//! (reading properties and headers, shared-data counters, replies) is in
//! `stream::exchange::access`. docs/access.md is the operator's guide.

mod cidr;
mod glob;
mod values;

use std::time::Duration;

use serde::Deserialize;

pub use cidr::{forwarded_client, parse_ip, Cidr};
pub use glob::Glob;
pub use values::{claim_values, encode_list, roles_from_claim};

use crate::decision::LocalReply;
use crate::events::EventKind;
use crate::policy::PolicyError;

// ---- wire shape -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalsDoc {
    pub sources: Vec<SourceDoc>,
    #[serde(default)]
    pub generic: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RoleGrantDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SourceDoc {
    Mtls(MtlsDoc),
    Jwt(JwtDoc),
    Header(HeaderDoc),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsDoc {
    pub identity: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtDoc {
    pub provider: String,
    pub payload_key: String,
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub roles_claim: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderDoc {
    pub name: String,
    pub set_by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGrantDoc {
    pub principal: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAddressDoc {
    pub source: String,
    #[serde(default)]
    pub trusted_hops: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutDoc {
    pub after: u64,
    pub window_seconds: u64,
    pub duration_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAccessDoc {
    #[serde(default)]
    pub require_principal: bool,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub allow_cidrs: Option<Vec<String>>,
    #[serde(default)]
    pub lockout: bool,
}

// ---- compiled ---------------------------------------------------------------

/// Which identity of the client certificate is the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsIdentity {
    /// `connection.uri_san_peer_certificate` (a SPIFFE id).
    UriSan,
    /// `connection.dns_san_peer_certificate`.
    DnsSan,
    /// `connection.subject_peer_certificate`.
    Subject,
}

/// Where a principal comes from, tried in policy order; the first that
/// yields one wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSource {
    Mtls(MtlsIdentity),
    /// A JWT Envoy's `jwt_authn` verified, its payload in dynamic metadata
    /// under `envoy.filters.http.jwt_authn` / `payload_key`.
    Jwt {
        provider: String,
        payload_key: String,
        claim: String,
        roles_claim: Option<String>,
    },
    /// A header set by a trusted hop: it counts only on connections whose
    /// client certificate identity (URI or DNS SAN) is `set_by`; any other
    /// copy is removed before the request goes on.
    Header {
        name: String,
        set_by: String,
    },
}

impl PrincipalSource {
    /// The dynamic metadata path of a JWT claim (Envoy attribute path).
    pub fn jwt_claim_path<'a>(payload_key: &'a str, claim: &'a str) -> [&'a str; 5] {
        [
            "metadata",
            "filter_metadata",
            JWT_AUTHN_FILTER,
            payload_key,
            claim,
        ]
    }
}

/// The filter name `jwt_authn` writes its dynamic metadata under.
pub const JWT_AUTHN_FILTER: &str = "envoy.filters.http.jwt_authn";

/// Generic, shared and default identities refused everywhere (compared
/// ASCII case-insensitively, as globs; see [`Principals::is_generic`]).
pub const BUILTIN_GENERIC: &[&str] = &[
    "root",
    "admin",
    "administrator",
    "superuser",
    "sysadmin",
    "default",
    "guest",
    "anonymous",
    "anon",
    "nobody",
    "test",
    "tester",
    "testuser",
    "demo",
    "user",
    "shared",
    "service",
    "system",
    "operator",
    "system:anonymous",
    "system:unauthenticated",
    "system:serviceaccount:*:default",
    "spiffe://*/sa/default",
    "spiffe://*/sa/default/*",
];

#[derive(Debug, Clone)]
pub struct RoleGrant {
    pub principal: Glob,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Principals {
    pub sources: Vec<PrincipalSource>,
    /// Built-in and policy patterns (case-insensitive).
    pub generic: Vec<Glob>,
    pub roles: Vec<RoleGrant>,
}

/// Which address is the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAddressSource {
    /// The connection's peer (`source.address`).
    #[default]
    Socket,
    /// `x-forwarded-for`, `trusted_hops` entries from the right.
    ForwardedFor { trusted_hops: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures within one window that start a lockout.
    pub after: u64,
    pub window: Duration,
    pub duration: Duration,
}

/// The top-level access sections.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub principals: Option<Principals>,
    pub client_address: ClientAddressSource,
    pub lockout: Option<Lockout>,
}

/// A route's `access`.
#[derive(Debug, Clone, Default)]
pub struct RouteAccess {
    pub require_principal: bool,
    /// Roles admitted; `None`: any caller (that passes the other checks).
    pub roles: Option<Vec<String>>,
    pub allow_cidrs: Option<Vec<Cidr>>,
    pub lockout: bool,
}

/// What a decrypt rule does for callers without a `reveal_to` role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Otherwise {
    /// The field keeps its envelope (checked, not opened).
    Keep,
    /// The field's value becomes `"[redacted]"`.
    Redact,
}

/// A decrypt rule's need-to-know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reveal {
    pub roles: Vec<String>,
    pub otherwise: Otherwise,
}

impl Reveal {
    pub fn compile(
        reveal_to: Option<Vec<String>>,
        otherwise: Option<String>,
        at: &str,
    ) -> Result<Option<Reveal>, PolicyError> {
        let otherwise = match otherwise.as_deref() {
            None | Some("keep") => Otherwise::Keep,
            Some("redact") => Otherwise::Redact,
            Some(o) => {
                return Err(PolicyError::new(
                    format!("{at}.otherwise"),
                    format!("{o:?} is not `keep` or `redact`"),
                ))
            }
        };
        let Some(roles) = reveal_to else {
            if otherwise == Otherwise::Redact {
                return Err(PolicyError::new(
                    format!("{at}.otherwise"),
                    "only applies with `reveal_to`",
                ));
            }
            return Ok(None);
        };
        let roles = role_list(roles, &format!("{at}.reveal_to"))?;
        Ok(Some(Reveal { roles, otherwise }))
    }

    pub fn admits(&self, roles: &[String]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }
}

/// The value a redacted field gets.
pub const REDACTED_VALUE: &[u8] = b"\"[redacted]\"";

fn role_list(roles: Vec<String>, at: &str) -> Result<Vec<String>, PolicyError> {
    if roles.is_empty() {
        return Err(PolicyError::new(at, "must list at least one role"));
    }
    for (i, r) in roles.iter().enumerate() {
        if r.is_empty() || r.chars().any(char::is_whitespace) {
            return Err(PolicyError::new(
                format!("{at}[{i}]"),
                format!("{r:?} is not a role name (non-empty, no spaces)"),
            ));
        }
    }
    Ok(roles)
}

fn header_name(name: &str, at: &str) -> Result<String, PolicyError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(PolicyError::new(
            at,
            format!("{name:?} must be a lower-case header name"),
        ));
    }
    if name.starts_with(':') || ["host", "authorization", "cookie"].contains(&name) {
        return Err(PolicyError::new(
            at,
            format!("{name:?} cannot carry a principal"),
        ));
    }
    Ok(name.to_owned())
}

fn non_empty(value: String, at: &str) -> Result<String, PolicyError> {
    match value.trim().is_empty() {
        true => Err(PolicyError::new(at, "must not be empty")),
        false => Ok(value),
    }
}

impl AccessPolicy {
    pub fn compile(
        principals: Option<PrincipalsDoc>,
        client_address: Option<ClientAddressDoc>,
        lockout: Option<LockoutDoc>,
    ) -> Result<AccessPolicy, PolicyError> {
        Ok(AccessPolicy {
            principals: principals.map(Principals::compile).transpose()?,
            client_address: match client_address {
                None => ClientAddressSource::Socket,
                Some(doc) => ClientAddressSource::compile(doc)?,
            },
            lockout: lockout.map(Lockout::compile).transpose()?,
        })
    }

    /// The header source, if one is configured: its copies from anyone but
    /// the trusted hop are removed from every request.
    pub fn trusted_header(&self) -> Option<(&str, &str)> {
        self.principals
            .as_ref()?
            .sources
            .iter()
            .find_map(|s| match s {
                PrincipalSource::Header { name, set_by } => Some((name.as_str(), set_by.as_str())),
                _ => None,
            })
    }
}

impl Principals {
    fn compile(doc: PrincipalsDoc) -> Result<Principals, PolicyError> {
        let at = "principals";
        if doc.sources.is_empty() {
            return Err(PolicyError::new(
                format!("{at}.sources"),
                "must name at least one source",
            ));
        }
        let mut sources = Vec::with_capacity(doc.sources.len());
        let mut headers = 0;
        for (i, s) in doc.sources.into_iter().enumerate() {
            let at = format!("{at}.sources[{i}]");
            sources.push(match s {
                SourceDoc::Mtls(m) => PrincipalSource::Mtls(match m.identity.as_str() {
                    "uri_san" => MtlsIdentity::UriSan,
                    "dns_san" => MtlsIdentity::DnsSan,
                    "subject" => MtlsIdentity::Subject,
                    other => {
                        return Err(PolicyError::new(
                            format!("{at}.mtls.identity"),
                            format!("{other:?} is not `uri_san`, `dns_san` or `subject`"),
                        ))
                    }
                }),
                SourceDoc::Jwt(j) => PrincipalSource::Jwt {
                    provider: non_empty(j.provider, &format!("{at}.jwt.provider"))?,
                    payload_key: non_empty(j.payload_key, &format!("{at}.jwt.payload_key"))?,
                    claim: non_empty(
                        j.claim.unwrap_or_else(|| "sub".to_owned()),
                        &format!("{at}.jwt.claim"),
                    )?,
                    roles_claim: j
                        .roles_claim
                        .map(|c| non_empty(c, &format!("{at}.jwt.roles_claim")))
                        .transpose()?,
                },
                SourceDoc::Header(h) => {
                    headers += 1;
                    if headers > 1 {
                        return Err(PolicyError::new(
                            format!("{at}.header"),
                            "only one header source may be named",
                        ));
                    }
                    PrincipalSource::Header {
                        name: header_name(&h.name, &format!("{at}.header.name"))?,
                        set_by: non_empty(h.set_by, &format!("{at}.header.set_by"))?,
                    }
                }
            });
        }
        let mut generic: Vec<Glob> = BUILTIN_GENERIC.iter().map(|g| Glob::new(g, true)).collect();
        for (i, g) in doc.generic.iter().enumerate() {
            generic.push(Glob::new(
                &non_empty(g.clone(), &format!("{at}.generic[{i}]"))?,
                true,
            ));
        }
        let mut roles = Vec::with_capacity(doc.roles.len());
        for (i, r) in doc.roles.into_iter().enumerate() {
            let at = format!("{at}.roles[{i}]");
            let principal = non_empty(r.principal, &format!("{at}.principal"))?;
            roles.push(RoleGrant {
                principal: Glob::new(&principal, false),
                roles: role_list(r.roles, &format!("{at}.roles"))?,
            });
        }
        Ok(Principals {
            sources,
            generic,
            roles,
        })
    }

    /// A generic, shared or default identity: the principal itself, the
    /// local part of an e-mail-like principal, or a certificate subject's
    /// `CN`, matched case-insensitively against the built-in list and the
    /// policy's `generic` patterns.
    pub fn is_generic(&self, principal: &str) -> bool {
        let p = principal.trim();
        let mut candidates = vec![p];
        if let Some((local, _)) = p.split_once('@') {
            candidates.push(local);
        }
        for part in p.split([',', '/']) {
            let part = part.trim();
            if let Some(cn) = part
                .get(..3)
                .filter(|k| k.eq_ignore_ascii_case("cn="))
                .and_then(|_| part.get(3..))
            {
                candidates.push(cn.trim());
            }
        }
        candidates
            .iter()
            .any(|c| self.generic.iter().any(|g| g.is_match(c)))
    }

    /// Roles the policy's map grants `principal` (exact and glob, case
    /// sensitive), added to `out` without duplicates.
    pub fn grant_roles(&self, principal: &str, out: &mut Vec<String>) {
        for grant in &self.roles {
            if grant.principal.is_match(principal) {
                for r in &grant.roles {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
    }
}

impl ClientAddressSource {
    fn compile(doc: ClientAddressDoc) -> Result<ClientAddressSource, PolicyError> {
        match (doc.source.as_str(), doc.trusted_hops) {
            ("socket", None) => Ok(ClientAddressSource::Socket),
            ("socket", Some(_)) => Err(PolicyError::new(
                "client_address.trusted_hops",
                "only applies to `x-forwarded-for`",
            )),
            ("x-forwarded-for", Some(n)) if n >= 1 => {
                Ok(ClientAddressSource::ForwardedFor { trusted_hops: n })
            }
            ("x-forwarded-for", _) => Err(PolicyError::new(
                "client_address.trusted_hops",
                "required with `x-forwarded-for`: how many proxies in front append to it (at least 1); \
                 without trusted hops the header is whatever the client wrote",
            )),
            (other, _) => Err(PolicyError::new(
                "client_address.source",
                format!("{other:?} is not `socket` or `x-forwarded-for`"),
            )),
        }
    }
}

impl Lockout {
    fn compile(doc: LockoutDoc) -> Result<Lockout, PolicyError> {
        let positive = |v: u64, f: &str| match v {
            0 => Err(PolicyError::new(
                format!("lockout.{f}"),
                "must be at least 1",
            )),
            v => Ok(v),
        };
        Ok(Lockout {
            after: positive(doc.after, "after")?,
            window: Duration::from_secs(positive(doc.window_seconds, "window_seconds")?),
            duration: Duration::from_secs(positive(doc.duration_seconds, "duration_seconds")?),
        })
    }
}

impl RouteAccess {
    /// `at`: the route's path (`routes[0]`); `policy` checks the route
    /// against the top-level sections.
    pub fn compile(
        doc: RouteAccessDoc,
        at: &str,
        principals: bool,
        lockout: bool,
    ) -> Result<RouteAccess, PolicyError> {
        let at = format!("{at}.access");
        if (doc.require_principal || doc.roles.is_some()) && !principals {
            let field = match doc.roles.is_some() {
                true => "roles",
                false => "require_principal",
            };
            return Err(PolicyError::new(
                format!("{at}.{field}"),
                "needs a top-level `principals` section (where principals come from)",
            ));
        }
        if doc.lockout && !lockout {
            return Err(PolicyError::new(
                format!("{at}.lockout"),
                "needs a top-level `lockout` section (after, window_seconds, duration_seconds)",
            ));
        }
        let roles = doc
            .roles
            .map(|r| role_list(r, &format!("{at}.roles")))
            .transpose()?;
        let allow_cidrs = match doc.allow_cidrs {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(PolicyError::new(
                    format!("{at}.allow_cidrs"),
                    "must list at least one network (omit the field to allow any address)",
                ))
            }
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        Cidr::parse(c)
                            .map_err(|e| PolicyError::new(format!("{at}.allow_cidrs[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(RouteAccess {
            // Roles need someone to hold them.
            require_principal: doc.require_principal || roles.is_some(),
            roles,
            allow_cidrs,
            lockout: doc.lockout,
        })
    }

    /// Any listed role admits; no list admits everyone.
    pub fn admits(&self, roles: &[String]) -> bool {
        self.roles
            .as_ref()
            .is_none_or(|need| need.iter().any(|r| roles.contains(r)))
    }
}

// ---- refusals ---------------------------------------------------------------

/// Why the access checks refused a request. Status codes and reply codes
/// are documented in docs/access.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessRefusal {
    /// No principal on a route that requires one: 401.
    PrincipalRequired,
    /// A generic, shared or default identity: 403.
    GenericIdentity,
    /// The caller holds none of the route's roles: 403.
    AccessDenied,
    /// The client address is outside the route's allowlist (or unknown): 403.
    ClientAddress,
    /// The principal (or address) is locked out: 403 with `Retry-After`.
    LockedOut,
}

impl AccessRefusal {
    pub fn status(self) -> u32 {
        match self {
            AccessRefusal::PrincipalRequired => 401,
            _ => 403,
        }
    }

    pub fn code(self) -> &'static str {
        self.event().name()
    }

    pub fn event(self) -> EventKind {
        match self {
            AccessRefusal::PrincipalRequired => EventKind::PrincipalRequired,
            AccessRefusal::GenericIdentity => EventKind::GenericIdentityRefused,
            AccessRefusal::AccessDenied => EventKind::AccessDenied,
            AccessRefusal::ClientAddress => EventKind::ClientAddressRefused,
            AccessRefusal::LockedOut => EventKind::PrincipalLockedOut,
        }
    }

    fn message(self) -> &'static str {
        match self {
            AccessRefusal::PrincipalRequired => "this route requires an authenticated principal",
            AccessRefusal::GenericIdentity => {
                "generic, shared or default identities are not accepted"
            }
            AccessRefusal::AccessDenied => "the caller's roles do not admit this route",
            AccessRefusal::ClientAddress => "the client address is not allowed on this route",
            AccessRefusal::LockedOut => {
                "too many refused or failed attempts; try again after the lockout"
            }
        }
    }

    /// The local reply; `retry_after`: seconds left of a lockout.
    pub fn reply(self, retry_after: Option<u64>) -> LocalReply {
        let mut reply = LocalReply::json(self.status(), self.code(), self.message());
        if self == AccessRefusal::PrincipalRequired {
            reply
                .extra_headers
                .push(("www-authenticate", "Bearer".to_owned()));
        }
        if let Some(s) = retry_after {
            reply.extra_headers.push(("retry-after", s.to_string()));
        }
        reply
    }
}

#[cfg(test)]
mod tests;
