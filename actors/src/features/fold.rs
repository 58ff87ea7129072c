//! How a write changes a profile (README "Writes"): the rule every feature store
//! applies, so the embedded and shared backends answer alike.
//!
//! An event on item `i` moves the user embedding `u` toward the item's `v` by the
//! kind's rate times the event's weight, and renormalises:
//! `u ← normalise(u + η·(v − u))`, `η = clamp(rate(kind) · weight, −0.5, 0.5)`
//! (a skip has a negative rate: it moves away). The item goes to the front of the
//! user's ring of recent items (at most `max_recent`, no repeats), which the pipeline
//! never recommends back. Dense features change only by upsert.

use crate::data::normalise;
use crate::types::{EventKind, Profile};

/// Rate of each kind (an ordinary event has weight 1).
pub fn rate(kind: EventKind) -> f32 {
    match kind {
        EventKind::View => 0.02,
        EventKind::Click => 0.10,
        EventKind::Like => 0.15,
        EventKind::AddToCart => 0.20,
        EventKind::Purchase => 0.30,
        EventKind::Skip => -0.05,
    }
}

/// Folds one event on `item` (its embedding `item_emb`) into `profile`.
pub fn apply_event(
    profile: &mut Profile,
    item: u64,
    item_emb: &[f32],
    kind: EventKind,
    weight: f32,
    max_recent: usize,
) {
    let eta = (rate(kind) * weight).clamp(-0.5, 0.5);
    let mut moved: Vec<f32> = (profile.emb.iter().zip(item_emb))
        .map(|(&u, &v)| u + eta * (v - u))
        .collect();
    // a move that cancels the embedding out (or a non-finite one) keeps the old one
    if normalise(&mut moved) {
        profile.emb = moved;
    }
    push_recent(&mut profile.recent, item, max_recent);
    profile.known = true;
}

/// Puts `item` at the front of `recent`, once, keeping at most `max` items.
pub fn push_recent(recent: &mut Vec<u64>, item: u64, max: usize) {
    recent.retain(|&r| r != item);
    recent.insert(0, item);
    recent.truncate(max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dot;

    /// Any schema folds alike: these tests run at 8 dimensions, 3 features.
    const DIM: usize = 8;

    fn unit(axis: usize) -> Vec<f32> {
        let mut v = vec![0f32; DIM];
        v[axis] = 1.0;
        v
    }

    #[test]
    fn events_move_toward_the_item_and_skips_away() {
        let mut p = Profile {
            emb: unit(0),
            feats: vec![0.0; 3],
            known: false,
            recent: vec![],
        };
        let item = unit(1);
        apply_event(&mut p, 7, &item, EventKind::Click, 1.0, 16);
        let after_click = dot(&p.emb, &item);
        assert!(after_click > 0.05, "{after_click}");
        assert!((dot(&p.emb, &p.emb) - 1.0).abs() < 1e-5);
        apply_event(&mut p, 7, &item, EventKind::Purchase, 1.0, 16);
        assert!(dot(&p.emb, &item) > after_click);
        let before_skip = dot(&p.emb, &item);
        apply_event(&mut p, 7, &item, EventKind::Skip, 1.0, 16);
        assert!(dot(&p.emb, &item) < before_skip);
        assert!(p.known);
        assert_eq!(p.recent, vec![7], "no repeats in the ring");
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let mut r = vec![];
        for i in 0..20 {
            push_recent(&mut r, i, 16);
        }
        push_recent(&mut r, 10, 16);
        assert_eq!(r.len(), 16);
        assert_eq!(r[0], 10);
        assert_eq!(r[1], 19);
        assert!(!r.contains(&3));
    }

    #[test]
    fn a_cancelling_move_keeps_the_embedding() {
        let mut p = Profile {
            emb: unit(0),
            feats: vec![0.0; 3],
            known: true,
            recent: vec![],
        };
        let mut opposite = vec![0f32; DIM];
        opposite[0] = -1.0;
        // η = 0.5 toward the opposite vector lands on zero
        apply_event(&mut p, 1, &opposite, EventKind::Purchase, 100.0, 16);
        assert_eq!(p.emb, unit(0));
    }
}
