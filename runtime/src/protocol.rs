//! The wire contract between recd nodes: versioned message envelopes and the codec.
//!
//! - [`codec`]: serde + bincode 2 (legacy, bincode-1-compatible layout) with a size
//!   check before sending and a decode limit for untrusted bytes.
//!
//! Every remote message is wrapped in an [`Envelope`] carrying [`PROTOCOL_VERSION`]; a
//! peer speaking another version is answered with an error, never misread.

pub mod codec;

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change of a remote message.
/// 2: profiles carry their recent items; feature-shard writes (`Request::Write`).
/// 3: a search carries its breadth (`ef`), a score call its model and the reply the
/// `name@version` that scored.
/// 4: every message carries the W3C trace id of the work it serves (0: none).
pub const PROTOCOL_VERSION: u16 = 4;

/// A remote message with its protocol version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The trace id (W3C trace context) of the request or batch the message serves;
    /// 0 when it serves none (heartbeats).
    pub trace: u128,
    /// The message.
    pub body: T,
}
