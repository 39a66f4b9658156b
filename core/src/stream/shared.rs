//! Counters every worker of one proxy shares: the state behind lockouts,
//! rate and volume alarms and unauthorized bursts.
//!
//! Envoy runs one Wasm VM per worker thread; what they share is the
//! host's key-value store (`proxy_get_shared_data` / `proxy_set_shared_data`)
//! with a compare-and-swap token per key. A counter here is a fixed window
//! on the host clock: `(window start, count)`, updated with CAS retries so
//! that two workers adding at once both count.
//!
//! Why fixed windows: one read and one write per event, 16 bytes per key,
//! and "once per window" has an exact meaning (the single update that moves
//! the count across a threshold). The cost is the usual one: a burst that
//! straddles a window boundary can reach twice the threshold before either
//! window crosses it; docs/access.md and docs/monitoring.md say so.
//!
//! Counts are per proxy: N replicas each count on their own, so a client
//! spread over them gets up to N times the threshold.
//!
//! Keys never hold a principal or address in clear: callers pass a keyed
//! pseudonym ([`crate::Pseudonymizer`]).

use super::facts::HostFault;

/// How many times an update is retried when another worker changed the
/// key in between. Each retry means another worker made progress, so this
/// bounds the work, not correctness; when exhausted, the update fails with
/// a fault and the caller fails closed.
pub const CAS_RETRIES: usize = 16;

/// The host's shared key-value store.
pub trait SharedStore {
    /// The value of `key` and its CAS token; `Ok(None)` when absent.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostFault>;

    /// Stores `value` if the key's token is still `cas` (0: unconditional,
    /// the only way to create a key). `Ok(false)`: another writer was first.
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostFault>;
}

/// A fixed-window count as stored: start of the window and events in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// Start of the window, nanoseconds since the Unix epoch.
    pub start: u64,
    pub count: u64,
}

impl Window {
    const LEN: usize = 16;

    fn encode(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.start.to_le_bytes());
        b[8..].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    /// A value of another shape (a key written by an older build, or by a
    /// different plugin sharing the VM) reads as an empty window.
    fn decode(bytes: &[u8]) -> Window {
        let word = |r: std::ops::Range<usize>| {
            bytes
                .get(r)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
        };
        match (bytes.len(), word(0..8), word(8..16)) {
            (Self::LEN, Some(start), Some(count)) => Window { start, count },
            _ => Window::default(),
        }
    }

    /// The window `now` falls in, aligned to multiples of `length`.
    fn containing(now: u64, length: u64) -> u64 {
        match length {
            0 => now,
            l => now - now % l,
        }
    }

    /// When this window ends.
    pub fn end(self, length: u64) -> u64 {
        self.start.saturating_add(length)
    }
}

/// What one [`add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// The window after this update.
    pub window: Window,
    /// This update moved the count from below `threshold` to at or above
    /// it. Exactly one update per window and key sees this, whichever
    /// worker made it: the alarm raised "once per window".
    pub crossed: bool,
}

/// Adds `delta` to the window counter `key` at time `now` (nanoseconds),
/// windows of `length` nanoseconds; `threshold` is what [`Tally::crossed`]
/// compares with.
pub fn add(
    store: &mut impl SharedStore,
    key: &str,
    now: u64,
    length: u64,
    delta: u64,
    threshold: u64,
) -> Result<Tally, HostFault> {
    let current = Window::containing(now, length);
    for _ in 0..CAS_RETRIES {
        let (old, cas) = match store.get(key)? {
            Some((bytes, cas)) => (Window::decode(&bytes), cas),
            None => (Window::default(), 0),
        };
        let before = match old.start == current {
            true => old.count,
            false => 0, // a new window: the old count has expired
        };
        let window = Window {
            start: current,
            count: before.saturating_add(delta),
        };
        if store.set(key, &window.encode(), cas)? {
            return Ok(Tally {
                window,
                crossed: before < threshold && window.count >= threshold,
            });
        }
    }
    Err(HostFault::status("proxy_set_shared_data", CAS_MISMATCH))
}

/// The count of `key` in the window containing `now`, without changing it.
pub fn peek(
    store: &mut impl SharedStore,
    key: &str,
    now: u64,
    length: u64,
) -> Result<Window, HostFault> {
    let current = Window::containing(now, length);
    Ok(match store.get(key)? {
        Some((bytes, _)) => match Window::decode(&bytes) {
            w if w.start == current => w,
            _ => Window {
                start: current,
                count: 0,
            },
        },
        None => Window {
            start: current,
            count: 0,
        },
    })
}

/// A deadline shared by every worker (a lockout's end), nanoseconds since
/// the Unix epoch; `Ok(None)` when none is set or it has passed.
pub fn deadline(
    store: &mut impl SharedStore,
    key: &str,
    now: u64,
) -> Result<Option<u64>, HostFault> {
    let until = store
        .get(key)?
        .and_then(|(b, _)| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_le_bytes);
    Ok(until.filter(|&u| u > now))
}

/// Sets the deadline `key` to `until` unless a later one is already set.
pub fn extend_deadline(
    store: &mut impl SharedStore,
    key: &str,
    until: u64,
) -> Result<(), HostFault> {
    for _ in 0..CAS_RETRIES {
        let (old, cas) = match store.get(key)? {
            Some((b, cas)) => (
                <[u8; 8]>::try_from(b.as_slice())
                    .map(u64::from_le_bytes)
                    .unwrap_or(0),
                cas,
            ),
            None => (0, 0),
        };
        if old >= until {
            return Ok(());
        }
        if store.set(key, &until.to_le_bytes(), cas)? {
            return Ok(());
        }
    }
    Err(HostFault::status("proxy_set_shared_data", CAS_MISMATCH))
}

/// proxy-wasm's CAS_MISMATCH status, reported when retries ran out.
pub const CAS_MISMATCH: u32 = 8;

/// An in-memory [`SharedStore`] with Envoy's semantics (tokens start at 1
/// and grow with every write; 0 sets unconditionally), for tests and for
/// hosts with one thread.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    entries: std::collections::HashMap<String, (Vec<u8>, u32)>,
}

impl SharedStore for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostFault> {
        Ok(self.entries.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostFault> {
        let entry = self
            .entries
            .entry(key.to_owned())
            .or_insert((Vec::new(), 0));
        if cas != 0 && cas != entry.1 {
            return Ok(false);
        }
        entry.0 = value.to_vec();
        entry.1 = entry.1.wrapping_add(1).max(1);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn counts_within_a_window_and_restarts_in_the_next() {
        let mut s = MemoryStore::default();
        let t0 = 1_000 * SEC;
        for i in 1..=3 {
            let t = add(&mut s, "k", t0 + i * SEC, 60 * SEC, 1, 100).unwrap();
            assert_eq!(t.window.count, i);
        }
        let t = add(&mut s, "k", t0 + 61 * SEC, 60 * SEC, 1, 100).unwrap();
        assert_eq!(t.window.count, 1, "a new window starts from zero");
        assert_eq!(
            peek(&mut s, "k", t0 + 200 * SEC, 60 * SEC).unwrap().count,
            0
        );
    }

    #[test]
    fn exactly_one_update_crosses_a_threshold_per_window() {
        let mut s = MemoryStore::default();
        let crossings: Vec<bool> = (0..10)
            .map(|_| add(&mut s, "k", 5 * SEC, 60 * SEC, 1, 4).unwrap().crossed)
            .collect();
        assert_eq!(crossings.iter().filter(|c| **c).count(), 1);
        assert!(crossings[3], "the fourth event reaches a threshold of four");
        // A large delta crosses too (volume alarms add bytes, not events).
        let t = add(&mut s, "v", 5 * SEC, 60 * SEC, 5_000, 4_096).unwrap();
        assert!(t.crossed);
    }

    /// Another worker writes between our read and our write: the update is
    /// retried and both increments count.
    #[test]
    fn a_concurrent_writer_is_not_lost() {
        struct Racing {
            inner: MemoryStore,
            interfere: usize,
        }
        impl SharedStore for Racing {
            fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostFault> {
                let seen = self.inner.get(key);
                if self.interfere > 0 {
                    self.interfere -= 1;
                    add(&mut self.inner, key, 5 * SEC, 60 * SEC, 1, u64::MAX)?;
                }
                seen
            }
            fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostFault> {
                self.inner.set(key, value, cas)
            }
        }
        let mut s = Racing {
            inner: MemoryStore::default(),
            interfere: 0,
        };
        add(&mut s, "k", 5 * SEC, 60 * SEC, 1, 100).unwrap();
        s.interfere = 3;
        let t = add(&mut s, "k", 5 * SEC, 60 * SEC, 1, 100).unwrap();
        assert_eq!(t.window.count, 5, "1 + 3 concurrent + ours");
        s.interfere = CAS_RETRIES;
        assert!(add(&mut s, "k", 5 * SEC, 60 * SEC, 1, 100).is_err());
    }

    #[test]
    fn deadlines_only_move_later_and_expire() {
        let mut s = MemoryStore::default();
        assert_eq!(deadline(&mut s, "d", 10).unwrap(), None);
        extend_deadline(&mut s, "d", 100).unwrap();
        extend_deadline(&mut s, "d", 50).unwrap();
        assert_eq!(deadline(&mut s, "d", 10).unwrap(), Some(100));
        assert_eq!(
            deadline(&mut s, "d", 100).unwrap(),
            None,
            "ends at the deadline"
        );
    }

    #[test]
    fn foreign_values_read_as_empty() {
        let mut s = MemoryStore::default();
        s.set("k", b"not a window", 0).unwrap();
        assert_eq!(
            add(&mut s, "k", SEC, 60 * SEC, 1, 9).unwrap().window.count,
            1
        );
    }
}
