//! The access checks of one stream (issue 13): principal and roles from
//! what Envoy verified, the trusted-header strip, address allowlists,
//! generic identities, roles, and lockout over the proxy's shared data.
//! The decisions' vocabulary is in [`crate::access_control`].

use std::net::IpAddr;
use std::rc::Rc;

use crate::access_control::{
    claim_values, forwarded_client, parse_ip, roles_from_claim, AccessRefusal, ClientAddressSource,
    MtlsIdentity, PrincipalSource, Principals, RouteAccess,
};
use crate::decision::LocalReply;
use crate::events::{EventKind, SecurityEvent};
use crate::policy::Route;
use crate::stream::facts::{HeaderView, HostFault, Property, PropertySource};
use crate::stream::shared::{self, SharedStore};

use super::Exchange;
use crate::stream::effects::Effects;

/// Whom lockouts, rate and volume limits count: the principal, or the
/// client address when there is no principal; only ever as a keyed
/// pseudonym.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: SubjectKind,
    /// `p:…` (the log key's pseudonym), or a placeholder without a log key
    /// (then [`Subject::keyed`] is false and nothing is counted by it).
    pub pseudonym: String,
    pub keyed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Principal,
    ClientAddress,
}

impl Subject {
    /// Shared-data key of this subject's counter or deadline.
    fn key(&self, what: &str) -> String {
        let kind = match self.kind {
            SubjectKind::Principal => "principal",
            SubjectKind::ClientAddress => "address",
        };
        format!("dpp_guard.lockout.{what}.{kind}.{}", self.pseudonym)
    }
}

/// Who the caller is, as far as this stream's checks needed to know.
#[derive(Debug, Default)]
pub(super) struct Caller {
    pub principal: Option<String>,
    pub roles: Vec<String>,
    /// The principal is a generic identity: it is refused on routes with
    /// `access`, and sees no field a `reveal_to` guards.
    pub generic: bool,
    pub subject: Option<Subject>,
    /// A client-sent copy of the trusted principal header was removed:
    /// it must not be read as the principal.
    pub header_untrusted: bool,
}

impl Exchange {
    /// Whom this stream's limits count (after the request headers).
    pub fn subject(&self) -> Option<&Subject> {
        self.caller.subject.as_ref()
    }

    /// The roles the caller holds (after the request headers).
    pub fn roles(&self) -> &[String] {
        &self.caller.roles
    }

    /// Every request: a copy of the trusted principal header from anyone
    /// but the trusted hop is removed (and never read as the principal).
    pub(super) fn strip_untrusted_header(
        &mut self,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
        fx: &mut Effects,
    ) -> Result<(), HostFault> {
        let guard = Rc::clone(&self.guard);
        let Some((name, set_by)) = guard.policy().access.trusted_header() else {
            return Ok(());
        };
        if headers.get(name)?.is_none() {
            return Ok(());
        }
        if self.is_trusted_hop(props, set_by)? {
            return Ok(());
        }
        self.caller.header_untrusted = true;
        fx.remove(name.to_owned());
        let event = SecurityEvent::new(EventKind::UntrustedPrincipalHeader).detail(name);
        self.raise(fx, event);
        Ok(())
    }

    /// The connection's client certificate names the trusted hop (URI or
    /// DNS SAN, exactly).
    fn is_trusted_hop(
        &mut self,
        props: &mut impl PropertySource,
        set_by: &str,
    ) -> Result<bool, HostFault> {
        for p in [Property::PeerUriSan, Property::PeerDnsSan] {
            if self.props.string(props, p)? == Some(set_by) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The route's access checks; `Ok(true)` when the request was refused.
    pub(super) fn check_access(
        &mut self,
        route: &Route,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
        store: &mut impl SharedStore,
        fx: &mut Effects,
    ) -> Result<bool, HostFault> {
        let guard = Rc::clone(&self.guard);
        let policy = guard.policy();
        if let Some(principals) = &policy.access.principals {
            self.resolve_principal(principals, headers, props)?;
        }
        let access = route.access.as_ref();
        let wants_address = access.is_some_and(|a| a.allow_cidrs.is_some() || a.lockout);
        let ip = match wants_address {
            true => self.client_ip(headers, props)?,
            false => None,
        };
        self.caller.subject = self.make_subject(ip);
        if let (Some(record), Some(p)) = (&mut self.record, &self.caller.principal) {
            record.principal = Some(p.clone());
        }
        let Some(access) = access else {
            return Ok(false);
        };
        if access.lockout {
            if let Some((reply, kind)) = self.locked_out(store, props)? {
                let event = self.access_event(kind, route);
                if self.refuse(fx, reply, event) {
                    return Ok(true);
                }
            }
        }
        if let Some(refusal) = self.first_refusal(access, ip) {
            let event = self.access_event(refusal.event(), route);
            // Counted in report mode too: the lockout it would start is
            // reported (flagged), so a rollout shows who would be locked out.
            let refused = self.refuse(fx, refusal.reply(None), event);
            self.count_failure(store, props, fx);
            return Ok(refused);
        }
        Ok(false)
    }

    fn first_refusal(&self, access: &RouteAccess, ip: Option<IpAddr>) -> Option<AccessRefusal> {
        if let Some(cidrs) = &access.allow_cidrs {
            // An address that cannot be determined is outside every list.
            if !ip.is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip))) {
                return Some(AccessRefusal::ClientAddress);
            }
        }
        match &self.caller.principal {
            None if access.require_principal => return Some(AccessRefusal::PrincipalRequired),
            Some(_) if self.caller.generic => return Some(AccessRefusal::GenericIdentity),
            _ => {}
        }
        match access.admits(&self.caller.roles) {
            true => None,
            false => Some(AccessRefusal::AccessDenied),
        }
    }

    fn access_event(&self, kind: EventKind, route: &Route) -> SecurityEvent {
        let event = SecurityEvent::new(kind)
            .route(&route.name)
            .method(&self.method);
        match &self.caller.subject {
            Some(s) => event.subject(&s.pseudonym),
            None => event,
        }
    }

    /// Principal from the first source that yields one; roles from its
    /// claim and the policy's map.
    fn resolve_principal(
        &mut self,
        principals: &Principals,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
    ) -> Result<(), HostFault> {
        for source in &principals.sources {
            let mut roles = Vec::new();
            let found = match source {
                PrincipalSource::Mtls(id) => {
                    let p = match id {
                        MtlsIdentity::UriSan => Property::PeerUriSan,
                        MtlsIdentity::DnsSan => Property::PeerDnsSan,
                        MtlsIdentity::Subject => Property::PeerSubject,
                    };
                    // The trusted hop forwards for others (the header
                    // names them): its own certificate is not the caller.
                    let hop = principals.sources.iter().find_map(|s| match s {
                        PrincipalSource::Header { set_by, .. } => Some(set_by.as_str()),
                        _ => None,
                    });
                    self.props
                        .string(props, p)?
                        .filter(|id| Some(*id) != hop)
                        .map(str::to_owned)
                }
                PrincipalSource::Jwt {
                    payload_key,
                    claim,
                    roles_claim,
                    ..
                } => {
                    let path = PrincipalSource::jwt_claim_path(payload_key, claim);
                    let values = props.get_path(&path)?.map(|v| claim_values(&v));
                    // An array `sub` names no single principal.
                    let found = match values.as_deref() {
                        Some([one]) => Some(one.clone()),
                        _ => None,
                    };
                    if let (Some(_), Some(rc)) = (&found, roles_claim) {
                        let path = PrincipalSource::jwt_claim_path(payload_key, rc);
                        if let Some(v) = props.get_path(&path)? {
                            roles = roles_from_claim(rc, claim_values(&v));
                        }
                    }
                    found
                }
                PrincipalSource::Header { name, .. } => match self.caller.header_untrusted {
                    true => None,
                    false => headers.get(name)?,
                },
            };
            let Some(principal) = found.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty())
            else {
                continue;
            };
            principals.grant_roles(&principal, &mut roles);
            self.caller.generic = principals.is_generic(&principal);
            self.caller.roles = roles;
            self.caller.principal = Some(principal);
            return Ok(());
        }
        Ok(())
    }

    /// The client address the policy names; `None` when it cannot be
    /// determined (refused by any allowlist).
    fn client_ip(
        &mut self,
        headers: &mut impl HeaderView,
        props: &mut impl PropertySource,
    ) -> Result<Option<IpAddr>, HostFault> {
        Ok(match self.guard.policy().access.client_address {
            ClientAddressSource::Socket => self
                .props
                .string(props, Property::SourceAddress)?
                .and_then(parse_ip),
            ClientAddressSource::ForwardedFor { trusted_hops } => headers
                .get("x-forwarded-for")?
                .and_then(|h| forwarded_client(&h, trusted_hops)),
        })
    }

    fn make_subject(&self, ip: Option<IpAddr>) -> Option<Subject> {
        let scrubber = self.guard.scrubber();
        let keyed = scrubber.pseudonymizer().is_some();
        if let Some(p) = &self.caller.principal {
            return Some(Subject {
                kind: SubjectKind::Principal,
                pseudonym: scrubber.principal(p),
                keyed,
            });
        }
        ip.map(|ip| Subject {
            kind: SubjectKind::ClientAddress,
            pseudonym: scrubber.client_address(&ip.to_string()),
            keyed,
        })
    }

    /// The lockout reply if the subject is locked out now. Without the log
    /// key there is no keyed pseudonym to count by: refused (fail closed).
    fn locked_out(
        &mut self,
        store: &mut impl SharedStore,
        props: &mut impl PropertySource,
    ) -> Result<Option<(LocalReply, EventKind)>, HostFault> {
        let Some(subject) = &self.caller.subject else {
            return Ok(None);
        };
        if !subject.keyed {
            return Ok(Some((lockout_unavailable(), EventKind::LogKeyUnavailable)));
        }
        let now = props.unix_time_nanos();
        Ok(
            shared::deadline(store, &subject.key("until"), now)?.map(|until| {
                let left = until.saturating_sub(now).div_ceil(1_000_000_000).max(1);
                (
                    AccessRefusal::LockedOut.reply(Some(left)),
                    EventKind::PrincipalLockedOut,
                )
            }),
        )
    }

    /// One refusal or authentication failure of this stream's subject, on
    /// a route with `lockout`: counted in the proxy's shared data; the
    /// update that reaches the count starts the lockout. A store fault is
    /// reported; the answer already is a refusal.
    pub(super) fn count_failure(
        &mut self,
        store: &mut impl SharedStore,
        props: &mut impl PropertySource,
        fx: &mut Effects,
    ) {
        let guard = Rc::clone(&self.guard);
        let (Some(lockout), Some(route)) = (guard.policy().access.lockout, self.route()) else {
            return;
        };
        if !route.access.as_ref().is_some_and(|a| a.lockout) {
            return;
        }
        let route_name = route.name.clone();
        let Some(subject) = self.caller.subject.clone().filter(|s| s.keyed) else {
            return;
        };
        let now = props.unix_time_nanos();
        let window = u64::try_from(lockout.window.as_nanos()).unwrap_or(u64::MAX);
        let duration = u64::try_from(lockout.duration.as_nanos()).unwrap_or(u64::MAX);
        let result = shared::add(store, &subject.key("count"), now, window, 1, lockout.after)
            .and_then(|tally| match tally.crossed {
                true => shared::extend_deadline(
                    store,
                    &subject.key("until"),
                    now.saturating_add(duration),
                )
                .map(|()| true),
                false => Ok(false),
            });
        match result {
            Ok(true) => {
                let event = SecurityEvent::new(EventKind::LockoutStarted)
                    .route(&route_name)
                    .method(&self.method)
                    .subject(&subject.pseudonym)
                    .detail(format!(
                        "{} failures within {}s: locked out for {}s",
                        lockout.after,
                        lockout.window.as_secs(),
                        lockout.duration.as_secs()
                    ));
                // In report mode the lockout is counted but not enforced:
                // its start is reported as what would have happened.
                let event = match self.mode().is_report() {
                    true => event.report_only(),
                    false => event,
                };
                self.raise(fx, event);
            }
            Ok(false) => {}
            Err(fault) => {
                let event = SecurityEvent::new(EventKind::HostCallFailed)
                    .route(&route_name)
                    .detail(format!("lockout count: {fault}"));
                self.raise(fx, event);
            }
        }
    }

    /// Whether the caller may see rule `rule`'s plaintext on this route.
    pub(super) fn reveals(&self) -> impl Fn(&crate::access_control::Reveal) -> bool + '_ {
        move |r| !self.caller.generic && r.admits(&self.caller.roles)
    }
}

fn lockout_unavailable() -> LocalReply {
    LocalReply::json(
        500,
        "check_unavailable",
        "the lockout check could not run (no log key to count by); the request was not forwarded",
    )
}
