//! Routes and how a request is matched to one.

use regex_lite::Regex;

use super::doc::{MatchDoc, PathDoc, RouteDoc};
use super::fields::{self, BodyOptions, FieldRules};
use super::PolicyError;
use crate::path::{self, NormalPath};
use crate::RequestFacts;

/// A policy route: which requests it covers and the controls it applies.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Position in [`super::Policy::routes`] (set when the policy is compiled).
    pub index: usize,
    pub matcher: RouteMatch,
    /// Operator kill switch: every matching request gets a local 503.
    pub kill_switch: bool,
    /// Responses get `Cache-Control: no-store` and `Pragma: no-cache`.
    pub no_store: bool,
    /// Field encryption / decryption of the request body.
    pub request_fields: Option<FieldRules>,
    /// Field encryption / decryption of the response body.
    pub response_fields: Option<FieldRules>,
    /// Limits and content checks for bodies under field rules.
    pub body: BodyOptions,
    /// The mode this route's controls run in: its own `mode`, else the
    /// policy's (resolved when the policy is compiled).
    pub mode: super::Mode,
    /// The route's own `mode`, if it set one.
    pub mode_override: Option<super::Mode>,
    /// Per-client rate and volume limits.
    pub limits: super::Limits,
    /// Access checks (`access`); `None`: none.
    pub access: Option<crate::access_control::RouteAccess>,
}

/// All conditions must hold; an absent condition matches everything.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    pub methods: Option<MethodSet>,
    pub route_name: Option<String>,
}

/// How a path is compared: ASCII case-insensitively unless the route opts
/// into case-sensitive matching. Insensitive is the default because many
/// services route `/ORDERS/` to the `/orders/` handler (ASP.NET, Spring
/// with a case-insensitive matcher, IIS): a case-sensitive match would let
/// such a request past the route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathCase {
    #[default]
    Insensitive,
    Sensitive,
}

/// A host name, or `*.suffix` for any subdomain. Compared case-insensitively
/// and without the port, as Envoy's virtual host matching does.
#[derive(Debug, Clone)]
pub enum HostMatch {
    Exact(String),
    Suffix(String),
}

/// Compared with the request's path in normal form (crate::path).
#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String, PathCase),
    Exact(String, PathCase),
    /// Must match the whole path (query string excluded), like Envoy's
    /// `safe_regex`; compiled with `(?i)` unless case-sensitive.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct MethodSet(Vec<String>);

impl Route {
    pub(super) fn compile(
        doc: RouteDoc,
        at: &str,
        top: &crate::access_control::AccessPolicy,
    ) -> Result<Route, PolicyError> {
        if doc.name.trim().is_empty() {
            return Err(PolicyError::new(format!("{at}.name"), "must not be empty"));
        }
        let matcher = RouteMatch::compile(doc.matcher, &format!("{at}.match"))?;
        let (request_fields, response_fields) =
            fields::compile_rules(doc.encrypt, doc.decrypt, at)?;
        if doc.body.is_some() && request_fields.is_none() && response_fields.is_none() {
            return Err(PolicyError::new(
                format!("{at}.body"),
                "only applies to routes with `encrypt` or `decrypt` rules",
            ));
        }
        let access = doc
            .access
            .map(|a| {
                crate::access_control::RouteAccess::compile(
                    a,
                    at,
                    top.principals.is_some(),
                    top.lockout.is_some(),
                )
            })
            .transpose()?;
        let reveals = [&request_fields, &response_fields]
            .into_iter()
            .flatten()
            .flat_map(|f| f.rules.iter())
            .any(|r| r.reveal.is_some());
        if reveals && top.principals.is_none() {
            return Err(PolicyError::new(
                format!("{at}.decrypt"),
                "`reveal_to` needs a top-level `principals` section (where roles come from)",
            ));
        }
        Ok(Route {
            access,
            name: doc.name,
            index: 0,
            matcher,
            kill_switch: doc.kill_switch,
            no_store: doc.no_store,
            request_fields,
            response_fields,
            body: BodyOptions::compile(doc.body, &format!("{at}.body"))?,
            mode: doc.mode.unwrap_or_default(),
            mode_override: doc.mode,
            limits: super::Limits::compile(doc.limits, &format!("{at}.limits"))?,
        })
    }
}

impl RouteMatch {
    fn compile(doc: MatchDoc, at: &str) -> Result<RouteMatch, PolicyError> {
        let host = doc
            .host
            .map(|h| HostMatch::compile(&h, &format!("{at}.host")))
            .transpose()?;
        let case = if doc.case_sensitive {
            PathCase::Sensitive
        } else {
            PathCase::Insensitive
        };
        let path = doc
            .path
            .map(|p| PathMatch::compile(p, case, &format!("{at}.path")))
            .transpose()?;
        let methods = doc
            .methods
            .map(|m| MethodSet::compile(m, &format!("{at}.methods")))
            .transpose()?;
        if let Some(name) = &doc.route_name {
            if name.is_empty() {
                return Err(PolicyError::new(
                    format!("{at}.route_name"),
                    "must not be empty",
                ));
            }
        }
        Ok(RouteMatch {
            host,
            path,
            methods,
            route_name: doc.route_name,
        })
    }

    /// `path`: the request's path in normal form (facts.path is the raw one).
    pub fn matches(&self, facts: &RequestFacts<'_>, path: &NormalPath<'_>) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(facts.host))
            && self.path.as_ref().is_none_or(|p| p.matches(path.as_str()))
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.contains(facts.method))
            && self
                .route_name
                .as_deref()
                .is_none_or(|n| facts.route_name == Some(n))
    }
}

impl HostMatch {
    fn compile(host: &str, at: &str) -> Result<HostMatch, PolicyError> {
        let host = host.to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        if let Some(suffix) = host.strip_prefix("*.") {
            if valid(suffix) {
                return Ok(HostMatch::Suffix(format!(".{suffix}")));
            }
        } else if valid(&host) {
            return Ok(HostMatch::Exact(host));
        }
        Err(PolicyError::new(
            at,
            format!("{host:?} is not a host name or `*.domain` wildcard"),
        ))
    }

    fn matches(&self, authority: &str) -> bool {
        // `api.example.com.` (fully qualified) names the same host.
        let host = strip_port(authority);
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => {
                host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // IPv6 literal: "[::1]:8080"
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| &authority[..h.len() + 1]);
    }
    authority
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h)
}

impl PathMatch {
    fn compile(doc: PathDoc, case: PathCase, at: &str) -> Result<PathMatch, PolicyError> {
        match doc {
            PathDoc::Prefix(p) => Ok(PathMatch::Prefix(
                normal_policy_path(p, &format!("{at}.prefix"))?,
                case,
            )),
            PathDoc::Exact(p) => Ok(PathMatch::Exact(
                normal_policy_path(p, &format!("{at}.exact"))?,
                case,
            )),
            PathDoc::Regex(r) => {
                // Anchor so the regex must match the whole path, as Envoy's
                // safe_regex route matcher does.
                let flags = match case {
                    PathCase::Insensitive => "(?i)",
                    PathCase::Sensitive => "",
                };
                Regex::new(&format!("{flags}^(?:{r})$"))
                    .map(PathMatch::Regex)
                    .map_err(|e| PolicyError::new(format!("{at}.regex"), format!("bad regex: {e}")))
            }
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p, PathCase::Sensitive) => path.starts_with(p.as_str()),
            PathMatch::Prefix(p, PathCase::Insensitive) => path
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
            PathMatch::Exact(p, PathCase::Sensitive) => path == p,
            PathMatch::Exact(p, PathCase::Insensitive) => path.eq_ignore_ascii_case(p),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// A policy's `prefix` or `exact` path must be in the normal form requests
/// are compared in; otherwise it could never match (or match the wrong thing).
fn normal_policy_path(p: String, at: &str) -> Result<String, PolicyError> {
    match path::normalize(&p) {
        Ok(n) if !n.changed() => Ok(n.as_str().to_string()),
        Ok(n) => Err(PolicyError::new(
            at,
            format!(
                "{p:?} is not in normal form; write {:?} (requests are matched after dot segments are removed, slashes merged and unreserved escapes decoded)",
                n.as_str()
            ),
        )),
        Err(path::PathProblem::NotOriginForm) => {
            Err(PolicyError::new(at, format!("{p:?} must start with '/'")))
        }
        Err(e) => Err(PolicyError::new(
            at,
            format!("{p:?} can never match: requests with such a path are refused ({e})"),
        )),
    }
}

impl MethodSet {
    fn compile(methods: Vec<String>, at: &str) -> Result<MethodSet, PolicyError> {
        if methods.is_empty() {
            return Err(PolicyError::new(
                at,
                "must list at least one method (omit the field to match any)",
            ));
        }
        let mut out = Vec::with_capacity(methods.len());
        for (i, m) in methods.into_iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(PolicyError::new(
                    format!("{at}[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                ));
            }
            out.push(m.to_ascii_uppercase());
        }
        Ok(MethodSet(out))
    }

    /// Case-insensitive: a service may treat `get` as `GET`.
    pub fn contains(&self, method: &str) -> bool {
        self.0.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

impl Route {
    /// The field rules of one direction, if any.
    pub fn fields(&self, dir: fields::Direction) -> Option<&FieldRules> {
        match dir {
            fields::Direction::Request => self.request_fields.as_ref(),
            fields::Direction::Response => self.response_fields.as_ref(),
        }
    }
}
