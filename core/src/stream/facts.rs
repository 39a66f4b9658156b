//! What an [`Exchange`](super::Exchange) reads, and how: small traits the
//! host adapter implements (the plugin over proxy-wasm host calls, tests
//! over plain values). The exchange pulls each fact when a decision needs
//! it and never before, so a request no route covers costs as few reads as
//! the policy allows; every read can fail, and a failure is a value the
//! exchange turns into a refusal (fail closed), never a panic.

use std::fmt;

/// A host call that did not deliver: the proxy could not hand over (or
/// change) something a decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFault {
    /// The host function, e.g. `proxy_get_header_map_value`.
    pub call: &'static str,
    /// Its proxy-wasm status; `None` when it answered OK with less than it
    /// announced (a body shorter than its reported size).
    pub status: Option<u32>,
}

impl HostFault {
    pub fn status(call: &'static str, status: u32) -> HostFault {
        HostFault {
            call,
            status: Some(status),
        }
    }

    pub fn short_read(call: &'static str) -> HostFault {
        HostFault { call, status: None }
    }
}

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} returned status {s}", self.call),
            None => write!(f, "{} returned fewer bytes than announced", self.call),
        }
    }
}

/// Read-only access to one header map (request or response headers).
pub trait HeaderView {
    /// The first value of header `name` (lower-case); `Ok(None)` when the
    /// header is absent.
    fn get(&mut self, name: &str) -> Result<Option<String>, HostFault>;

    /// The exchange is about to read several headers of this map: a view
    /// may fetch the whole map in one host call instead of one call per
    /// name. Reads stay correct without it.
    fn expect_several(&mut self) {}
}

/// The buffered body of the current direction.
pub trait BodyView {
    /// The first `len` bytes of the buffered body: exactly `len` bytes, or
    /// a fault.
    fn read(&mut self, len: usize) -> Result<Vec<u8>, HostFault>;
}

/// The stream's properties (Envoy attributes) the exchange may read, each
/// at most once per stream (the exchange caches what it read).
pub trait PropertySource {
    /// The raw value of `property`; `Ok(None)` when the host has none.
    fn get(&mut self, property: Property) -> Result<Option<Vec<u8>>, HostFault>;

    /// Wall-clock time, nanoseconds since the Unix epoch (0 if unknown).
    fn unix_time_nanos(&mut self) -> u64;

    /// The raw value of an attribute path the policy names (a JWT claim in
    /// dynamic metadata: `metadata.filter_metadata.<filter>.<key>.<claim>`);
    /// not cached, read at most once per stream by the exchange.
    fn get_path(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostFault>;
}

macro_rules! properties {
    ($( $(#[$doc:meta])* $variant:ident = [$($seg:literal),+]; )*) => {
        /// A stream property the exchange knows how to use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Property {
            $( $(#[$doc])* $variant, )*
        }

        impl Property {
            /// Every property, in table order (the index of the cache).
            pub const ALL: &'static [Property] = &[$(Property::$variant),*];

            /// The attribute path, as proxy-wasm `get_property` takes it.
            pub fn path(self) -> &'static [&'static str] {
                match self { $(Property::$variant => &[$($seg),+],)* }
            }
        }
    };
}

properties! {
    /// Envoy's route name (`xds.route_name`).
    RouteName = ["xds", "route_name"];
    /// The upstream cluster (`xds.cluster_name`).
    ClusterName = ["xds", "cluster_name"];
    /// TLS version of the downstream connection, absent on plaintext.
    DownstreamTlsVersion = ["connection", "tls_version"];
    /// Whether the client presented a certificate (1 byte).
    DownstreamMtls = ["connection", "mtls"];
    /// Subject of the client's certificate.
    PeerSubject = ["connection", "subject_peer_certificate"];
    /// First URI SAN of the client's certificate (a SPIFFE id).
    PeerUriSan = ["connection", "uri_san_peer_certificate"];
    /// First DNS SAN of the client's certificate.
    PeerDnsSan = ["connection", "dns_san_peer_certificate"];
    /// The client's `ip:port`.
    SourceAddress = ["source", "address"];
    /// Present once an upstream connection exists.
    UpstreamLocalAddress = ["upstream", "local_address"];
    /// TLS version of the upstream connection, absent on plaintext.
    UpstreamTlsVersion = ["upstream", "tls_version"];
    /// The response status (8 bytes, little-endian).
    ResponseCode = ["response", "code"];
    /// Why the response is what it is (`via_upstream`, a local reply's code, ...).
    ResponseCodeDetails = ["response", "code_details"];
    /// Nanoseconds from the first request byte to the last response byte.
    RequestDuration = ["request", "duration"];
    RequestTotalSize = ["request", "total_size"];
    ResponseTotalSize = ["response", "total_size"];
}

const PROPERTY_COUNT: usize = Property::ALL.len();

impl Property {
    fn index(self) -> usize {
        self as usize
    }
}

/// What a stream read so far: each property read at most once.
#[derive(Debug, Default)]
pub(super) struct PropertyCache {
    slots: [Option<Option<Vec<u8>>>; PROPERTY_COUNT],
}

impl PropertyCache {
    /// The raw value, read through `source` on first use.
    pub fn raw(
        &mut self,
        source: &mut impl PropertySource,
        p: Property,
    ) -> Result<Option<&[u8]>, HostFault> {
        let slot = &mut self.slots[p.index()];
        if slot.is_none() {
            // A failed read is not retried: it counts as absent from now on.
            let value = source.get(p);
            *slot = Some(value.as_ref().ok().cloned().flatten());
            value?;
        }
        Ok(slot.as_ref().and_then(|v| v.as_deref()))
    }

    /// A UTF-8 property; empty or invalid values count as absent.
    pub fn string(
        &mut self,
        source: &mut impl PropertySource,
        p: Property,
    ) -> Result<Option<&str>, HostFault> {
        Ok(self
            .raw(source, p)?
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|s| !s.is_empty()))
    }

    /// An integer property (Envoy: 8 bytes, little-endian).
    pub fn u64(
        &mut self,
        source: &mut impl PropertySource,
        p: Property,
    ) -> Result<Option<u64>, HostFault> {
        Ok(self
            .raw(source, p)?
            .and_then(|v| v.get(..8))
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes))
    }

    /// A boolean property (Envoy: one byte, 1 for true).
    pub fn flag(
        &mut self,
        source: &mut impl PropertySource,
        p: Property,
    ) -> Result<bool, HostFault> {
        Ok(self.raw(source, p)?.is_some_and(|v| v.first() == Some(&1)))
    }
}
