//! Encoding remote messages: bincode 2 through serde, in the legacy configuration
//! (fixed-width integers, little endian: the bincode 1 layout, which bincode-compatible
//! successors such as wincode also read; see docs/adr/0009).
//!
//! Sizes are checked on both sides: a message larger than [`MAX_FRAME`] is refused
//! before it is sent (one oversized frame would drop the whole ractor_cluster session),
//! and decoding never allocates more than [`MAX_FRAME`] whatever a peer claims. Payloads
//! that may be larger (index snapshots) go through [`chunk`] and [`Reassembler`].

use super::{Envelope, PROTOCOL_VERSION};
use bincode::config::{self, Config};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// Encodes `body` in a versioned envelope, refusing anything over [`MAX_FRAME`].
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, CodecError> {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
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

/// Decodes a versioned envelope from untrusted bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
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
    Ok(envelope.body)
}

/// One piece of a large payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Identifies the payload the chunk belongs to.
    pub transfer: u64,
    /// Position of this chunk.
    pub index: u32,
    /// Number of chunks in the payload.
    pub total: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Smallest chunk `chunk` produces (except the last): bounds the chunk count a
/// reassembler accepts.
pub const MIN_CHUNK: usize = 1024;

/// Splits `payload` into chunks of at most `max` (at least [`MIN_CHUNK`]) bytes of data.
pub fn chunk(transfer: u64, payload: &[u8], max: usize) -> Vec<Chunk> {
    let max = max.max(MIN_CHUNK);
    let total = payload.len().div_ceil(max).max(1) as u32;
    if payload.is_empty() {
        return vec![Chunk {
            transfer,
            index: 0,
            total,
            data: Vec::new(),
        }];
    }
    payload
        .chunks(max)
        .enumerate()
        .map(|(i, d)| Chunk {
            transfer,
            index: i as u32,
            total,
            data: d.to_vec(),
        })
        .collect()
}

/// Rebuilds a payload from its chunks, arriving in any order, with a size cap.
pub struct Reassembler {
    transfer: u64,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Reassembler {
    /// Expects chunks of `transfer`; refuses payloads over `max_bytes`.
    pub fn new(transfer: u64, max_bytes: usize) -> Self {
        Self {
            transfer,
            parts: Vec::new(),
            received: 0,
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds a chunk; returns the payload once every chunk has arrived.
    pub fn push(&mut self, c: Chunk) -> Result<Option<Vec<u8>>, CodecError> {
        let bad = |m: &str| Err(CodecError::Malformed(m.to_owned()));
        if c.transfer != self.transfer {
            return bad("chunk of another transfer");
        }
        if c.total == 0 || (!self.parts.is_empty() && c.total as usize != self.parts.len()) {
            return bad("inconsistent chunk count");
        }
        if self.received > 0 && self.received == self.parts.len() {
            return bad("transfer already complete");
        }
        if self.parts.is_empty() {
            // every chunk but the last carries data: more chunks than bytes allowed is a lie
            if c.total as usize > self.max_bytes.max(1) / MIN_CHUNK + 1 {
                return bad("more chunks than the size cap allows");
            }
            self.parts = vec![None; c.total as usize];
        }
        let slot = self
            .parts
            .get_mut(c.index as usize)
            .ok_or_else(|| CodecError::Malformed("chunk index out of range".into()))?;
        if slot.is_some() {
            return bad("duplicate chunk");
        }
        self.bytes += c.data.len();
        if self.bytes > self.max_bytes {
            return Err(CodecError::TooLarge {
                size: self.bytes,
                max: self.max_bytes,
            });
        }
        *slot = Some(c.data);
        self.received += 1;
        if self.received < self.parts.len() {
            return Ok(None);
        }
        Ok(Some(
            self.parts
                .iter_mut()
                .flat_map(|p| p.take().unwrap_or_default())
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests;
