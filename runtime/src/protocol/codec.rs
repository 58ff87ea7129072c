//! Encoding remote messages: bincode 2 through serde, in the legacy configuration
//! (fixed-width integers, little endian: the bincode 1 layout, which bincode-compatible
//! successors such as wincode also read; see docs/adr/0009).
//!
//! Sizes are checked on both sides: a message larger than [`MAX_FRAME`] is refused
//! before it is sent (one oversized frame would drop the whole ractor_cluster session),
//! and decoding never allocates more than [`MAX_FRAME`] whatever a peer claims. Every
//! message recd sends is one micro-batch's worth (≤ `MAX_BATCH` rows, far below the
//! frame); nothing larger crosses the wire yet, so there is no chunking.

use super::{Envelope, PROTOCOL_VERSION};
use bincode::config::{self, Config};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest encoded message: well under ractor_cluster's 16 MiB inbound frame cap,
/// leaving room for its envelope.
pub const MAX_FRAME: usize = 8 << 20;

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The encoded message would exceed [`MAX_FRAME`].
    #[error("message of {size} bytes exceeds the {max} byte frame limit")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer speaks another protocol version.
    #[error("protocol version {got}, this node speaks {PROTOCOL_VERSION}")]
    Version {
        /// The peer's version.
        got: u16,
    },
}

fn cfg() -> impl Config {
    config::legacy().with_limit::<MAX_FRAME>()
}

/// Encodes `body` in a versioned envelope without a trace.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, CodecError> {
    encode_traced(body, 0)
}

/// Encodes `body` in a versioned envelope carrying `trace`, refusing anything over
/// [`MAX_FRAME`].
pub fn encode_traced<T: Serialize>(body: &T, trace: u128) -> Result<Vec<u8>, CodecError> {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        trace,
        body,
    };
    let bytes = bincode::serde::encode_to_vec(&envelope, config::legacy())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            max: MAX_FRAME,
        });
    }
    Ok(bytes)
}

/// Decodes a versioned envelope from untrusted bytes; the trace is dropped.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_traced(bytes).map(|(body, _)| body)
}

/// Decodes a versioned envelope from untrusted bytes: the body and its trace id.
pub fn decode_traced<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, u128), CodecError> {
    if bytes.len() > MAX_FRAME {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            max: MAX_FRAME,
        });
    }
    // the version comes first in the layout: check it before trusting the rest
    let version: u16 = bincode::serde::decode_from_slice(bytes, cfg())
        .map(|(v, _)| v)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if version != PROTOCOL_VERSION {
        return Err(CodecError::Version { got: version });
    }
    let (envelope, used): (Envelope<T>, usize) = bincode::serde::decode_from_slice(bytes, cfg())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok((envelope.body, envelope.trace))
}

#[cfg(test)]
mod tests;
