//! What an [`Exchange`](super::Exchange) asks the host to do after a phase:
//! one value, applied by the host adapter in field order.

use std::borrow::Cow;

use crate::access::AccessRecord;
use crate::decision::LocalReply;
use crate::events::SecurityEvent;

/// Whether the stream goes on after the callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flow {
    /// Let the headers / data of this phase through.
    #[default]
    Continue,
    /// Hold them (a body being buffered, or a stream answered locally).
    Pause,
}

/// One change to the headers of the current phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Replace every value of the header with this one.
    Set(&'static str, Cow<'static, str>),
    /// Remove the header (a name the policy chose is owned).
    Remove(Cow<'static, str>),
}

/// The rewritten body that replaces the first `len` buffered bytes (the
/// whole buffered body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyReplacement {
    pub len: usize,
    pub bytes: Vec<u8>,
}

/// Everything the host must do after one phase. The default is "continue,
/// change nothing" and allocates nothing.
#[derive(Debug, Default)]
pub struct Effects {
    /// The callback's answer.
    pub flow: Flow,
    /// Header edits on this phase's header map, in order.
    pub header_edits: Vec<HeaderEdit>,
    /// Replaces this phase's buffered body.
    pub body: Option<BodyReplacement>,
    /// Answer the client with this instead of forwarding.
    pub reply: Option<LocalReply>,
    /// Reset the stream: the last resort when even a local reply could not
    /// be sent. Nothing more of it is forwarded.
    pub reset: bool,
    /// Security events to log, one line each.
    pub events: Vec<SecurityEvent>,
    /// Counters to add one to (every event's kind and severity counters
    /// are listed here too).
    pub counters: Vec<&'static str>,
    /// At log: the access record (built and scrubbed), to seal into the
    /// worker's chain and publish.
    pub record: Option<Box<AccessRecord>>,
}

impl Effects {
    /// Continue, nothing else.
    pub fn proceed() -> Effects {
        Effects::default()
    }

    /// Hold, nothing else.
    pub fn pause() -> Effects {
        Effects {
            flow: Flow::Pause,
            ..Effects::default()
        }
    }

    pub(super) fn set(&mut self, name: &'static str, value: impl Into<Cow<'static, str>>) {
        self.header_edits.push(HeaderEdit::Set(name, value.into()));
    }

    pub(super) fn remove(&mut self, name: impl Into<Cow<'static, str>>) {
        self.header_edits.push(HeaderEdit::Remove(name.into()));
    }

    /// True when the host has nothing to do but return `flow`.
    pub fn is_quiet(&self) -> bool {
        self.header_edits.is_empty()
            && self.body.is_none()
            && self.reply.is_none()
            && !self.reset
            && self.events.is_empty()
            && self.counters.is_empty()
            && self.record.is_none()
    }
}
