//! The exchange's views of what Envoy holds, over the host wrappers: each
//! read is one host call (or none), made only when the exchange asks.

use dpp_core::stream::{BodyView, HeaderView, HostFault, Property, PropertySource, SharedStore};

use crate::host::{self, Pairs};
use crate::timing::{timed, Span};

/// One header map. Reads one header per host call, or, once the exchange
/// said it will read several, fetches the whole map in one call and looks
/// names up in place.
pub struct HostHeaders {
    map: u32,
    several: bool,
    pairs: Option<Pairs>,
}

impl HostHeaders {
    pub fn new(map: u32) -> HostHeaders {
        HostHeaders {
            map,
            several: false,
            pairs: None,
        }
    }
}

impl HeaderView for HostHeaders {
    fn get(&mut self, name: &str) -> Result<Option<String>, HostFault> {
        if self.several && self.pairs.is_none() {
            self.pairs = Some(host::header_pairs(self.map)?);
        }
        match &self.pairs {
            Some(p) => Ok(p.get(name).map(|v| String::from_utf8_lossy(v).into_owned())),
            None => host::header(self.map, name),
        }
    }

    fn expect_several(&mut self) {
        self.several = true;
    }
}

/// The buffered body of one direction.
pub struct HostBody {
    kind: u32,
}

impl HostBody {
    pub fn new(kind: u32) -> HostBody {
        HostBody { kind }
    }
}

impl BodyView for HostBody {
    fn read(&mut self, len: usize) -> Result<Vec<u8>, HostFault> {
        host::buffer_bytes(self.kind, 0, len)
    }
}

/// The stream's properties.
pub struct HostProperties;

impl PropertySource for HostProperties {
    fn get(&mut self, property: Property) -> Result<Option<Vec<u8>>, HostFault> {
        timed(Span::Property(property), || host::property(property.path()))
    }

    fn unix_time_nanos(&mut self) -> u64 {
        host::now_unix_nanos().unwrap_or(0)
    }

    fn get_path(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostFault> {
        host::property(path)
    }
}

/// The proxy's shared data: one store for every worker's VM.
pub struct HostShared;

impl SharedStore for HostShared {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostFault> {
        host::shared_data(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostFault> {
        host::set_shared_data(key, value, cas)
    }
}
