//! The stored form of a profile: what the feature store writes and the shard cache
//! keeps (ADR 0015). Compact — 216 bytes for a 64-d embedding, 16 features and 16 recent
//! items — and checked on the way back in: bytes from disk or from a shared store are
//! decoded as untrusted.
//!
//! ```text
//! version u8 (1) · kind u8 (1 profile, 0 erased)
//! profile: dim varint · feat_dim varint · dim × f16 · feat_dim × f16
//!          n_recent varint · n_recent × item id varint (most recent first)
//!          updated_at varint (unix seconds)
//! ```

use crate::data::Schema;
use crate::types::Profile;
use anyhow::{bail, ensure, Context};
use half::f16;

const VERSION: u8 = 1;
const ERASED: u8 = 0;
const PROFILE: u8 = 1;

/// Most recent items a stored profile may hold.
pub const MAX_RECENT: usize = 64;

/// A decoded stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// A profile, and when it last changed (unix seconds).
    Profile(Box<Profile>, u64),
    /// An erased user (kept so a demo user's derived profile does not come back).
    Erased,
}

/// The bytes of an erased user.
pub fn encode_erased() -> Vec<u8> {
    vec![VERSION, ERASED]
}

/// The bytes of `profile`, changed last at `updated_at`.
pub fn encode(profile: &Profile, updated_at: u64) -> Vec<u8> {
    let (dim, feat_dim) = (profile.emb.len(), profile.feats.len());
    let mut out = Vec::with_capacity(8 + 2 * (dim + feat_dim) + 3 * profile.recent.len());
    out.extend([VERSION, PROFILE]);
    put_varint(&mut out, dim as u64);
    put_varint(&mut out, feat_dim as u64);
    for &x in profile.emb.iter().chain(&profile.feats) {
        out.extend(f16::from_f32(x).to_le_bytes());
    }
    put_varint(&mut out, profile.recent.len() as u64);
    for &id in &profile.recent {
        put_varint(&mut out, id);
    }
    put_varint(&mut out, updated_at);
    out
}

/// Decodes stored bytes; anything malformed, of another schema than `schema` or
/// non-finite is an error.
pub fn decode(bytes: &[u8], schema: Schema) -> anyhow::Result<Stored> {
    let mut r = Reader(bytes);
    let version = r.byte()?;
    ensure!(
        version == VERSION,
        "stored profile version {version}, expected {VERSION}"
    );
    match r.byte()? {
        ERASED => {
            ensure!(r.0.is_empty(), "trailing bytes after an erased marker");
            Ok(Stored::Erased)
        }
        PROFILE => {
            let (dim, feat_dim) = (r.varint()?, r.varint()?);
            let Schema {
                dim: want,
                feat_dim: want_feats,
            } = schema;
            ensure!(
                dim == want as u64 && feat_dim == want_feats as u64,
                "stored profile is {dim}/{feat_dim}-d, the catalogue {want}/{want_feats}-d"
            );
            let mut emb = vec![0f32; want];
            let mut feats = vec![0f32; want_feats];
            for x in emb.iter_mut().chain(feats.iter_mut()) {
                let b = r.take(2)?;
                *x = f16::from_le_bytes([b[0], b[1]]).to_f32();
                ensure!(x.is_finite(), "stored profile holds a non-finite value");
            }
            let n = r.varint()?;
            ensure!(
                n as usize <= MAX_RECENT,
                "stored profile holds {n} recent items"
            );
            let recent = (0..n).map(|_| r.varint()).collect::<anyhow::Result<_>>()?;
            let updated_at = r.varint()?;
            ensure!(r.0.is_empty(), "trailing bytes after a stored profile");
            let profile = Profile {
                emb,
                feats,
                known: true,
                recent,
            };
            Ok(Stored::Profile(Box::new(profile), updated_at))
        }
        kind => bail!("stored value of unknown kind {kind}"),
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        ensure!(self.0.len() >= n, "stored profile is truncated");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> anyhow::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> anyhow::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte().context("reading a varint")?;
            let bits = u64::from(b & 0x7f);
            ensure!(shift < 63 || bits <= 1, "varint overflows u64");
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint longer than 10 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schema = Schema::WORKLOAD;

    fn decode(bytes: &[u8]) -> anyhow::Result<Stored> {
        super::decode(bytes, S)
    }

    fn profile(recent: Vec<u64>) -> Profile {
        Profile {
            emb: (0..S.dim).map(|i| (i as f32 - 32.0) / 300.0).collect(),
            feats: vec![0.25; S.feat_dim],
            known: true,
            recent,
        }
    }

    #[test]
    fn round_trips_within_half_precision_and_fits_256_bytes() {
        let p = profile((0..16).map(|i| 999_000 + i).collect());
        let bytes = encode(&p, 1_700_000_000);
        assert!(bytes.len() <= 256, "{} bytes", bytes.len());
        let Stored::Profile(q, at) = decode(&bytes).unwrap() else {
            panic!("not a profile")
        };
        assert_eq!(at, 1_700_000_000);
        assert_eq!(q.recent, p.recent);
        for (a, b) in p.emb.iter().zip(&q.emb) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        assert_eq!(decode(&encode_erased()).unwrap(), Stored::Erased);
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let good = encode(&profile(vec![1, 2, 3]), 5);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut version = good.clone();
        version[0] = 9;
        assert!(decode(&version).is_err());
        let mut nan = good.clone();
        nan[4] = 0x00;
        nan[5] = 0x7e; // f16 NaN
        assert!(decode(&nan).is_err());
        let mut dims = good;
        dims[2] = 63;
        assert!(decode(&dims).is_err());
        assert!(decode(&[1, 7]).is_err());
        assert!(
            decode(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .is_err()
        );
    }
}
