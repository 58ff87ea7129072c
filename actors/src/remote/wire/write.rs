//! The wire form of feature-shard writes ([`WireWrite`]) and of their outcomes, with the
//! checks a receiving node applies to a peer's writes: the same as the ingress applies
//! to a client's (`WriteOp::check`), plus ownership of every user by the shard; and the
//! checks of item changes sent to an index shard.

use super::{bad, Limits, MAX_BATCH};
use crate::data::Schema;
use crate::features::shard_of;
use crate::items::{ItemRow, MAX_ITEM_ID};
use crate::types::{EventKind, WriteOp, WriteOutcome};

/// Item changes, checked.
type Checked = Vec<(u64, Option<Arc<ItemRow>>)>;
use recd_runtime::RecdError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A [`WriteOp`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireWrite {
    /// `WriteOp::Upsert`.
    Upsert {
        /// User id.
        user: String,
        /// Embedding.
        emb: Vec<f32>,
        /// Dense features.
        feats: Vec<f32>,
        /// Recent items, most recent first.
        recent: Vec<u64>,
    },
    /// `WriteOp::Delete`.
    Delete {
        /// User id.
        user: String,
    },
    /// `WriteOp::Event`.
    Event {
        /// Event id.
        event_id: String,
        /// User id.
        user: String,
        /// Item id.
        item: u64,
        /// `EventKind::code`.
        kind: u8,
        /// Weight.
        weight: f32,
        /// Unix seconds.
        ts: u64,
    },
}

impl From<&WriteOp> for WireWrite {
    fn from(op: &WriteOp) -> Self {
        match op {
            WriteOp::Upsert {
                user,
                emb,
                feats,
                recent,
            } => WireWrite::Upsert {
                user: user.to_string(),
                emb: emb.clone(),
                feats: feats.clone(),
                recent: recent.clone(),
            },
            WriteOp::Delete { user } => WireWrite::Delete {
                user: user.to_string(),
            },
            WriteOp::Event {
                event_id,
                user,
                item,
                kind,
                weight,
                ts,
            } => WireWrite::Event {
                event_id: event_id.to_string(),
                user: user.to_string(),
                item: *item,
                kind: kind.code(),
                weight: *weight,
                ts: *ts,
            },
        }
    }
}

impl WireWrite {
    fn into_op(self) -> Result<WriteOp, String> {
        Ok(match self {
            WireWrite::Upsert {
                user,
                emb,
                feats,
                recent,
            } => WriteOp::Upsert {
                user: Arc::from(user),
                emb,
                feats,
                recent,
            },
            WireWrite::Delete { user } => WriteOp::Delete {
                user: Arc::from(user),
            },
            WireWrite::Event {
                event_id,
                user,
                item,
                kind,
                weight,
                ts,
            } => WriteOp::Event {
                event_id: Arc::from(event_id),
                user: Arc::from(user),
                item,
                kind: EventKind::from_code(kind).ok_or_else(|| format!("event kind {kind}"))?,
                weight,
                ts,
            },
        })
    }
}

/// A peer's writes to feature shard `shard`, checked.
pub(super) fn checked_ops(
    shard: usize,
    ops: Vec<WireWrite>,
    limits: Limits,
) -> Result<Vec<WriteOp>, RecdError> {
    if ops.is_empty() || ops.len() > MAX_BATCH {
        return Err(bad(format!("write of {} ops", ops.len())));
    }
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let op = op.into_op().map_err(bad)?;
        op.check(
            limits.schema,
            &|id| (id as usize) < limits.items,
            limits.max_recent,
        )
        .map_err(bad)?;
        if shard_of(op.user(), limits.feature_shards) != shard {
            return Err(bad(format!("a user not owned by feature shard {shard}")));
        }
        out.push(op);
    }
    Ok(out)
}

/// An item change on the wire: id, and embedding and features (`None`: a delete).
pub type WireItem = (u64, Option<(Vec<f32>, Vec<f32>)>);

/// A peer's item changes, checked: ids in range, shapes, finite values.
pub(super) fn checked_items(changes: Vec<WireItem>, schema: Schema) -> Result<Checked, RecdError> {
    if changes.is_empty() || changes.len() > MAX_BATCH {
        return Err(bad(format!("{} item changes", changes.len())));
    }
    let mut out = Vec::with_capacity(changes.len());
    for (id, row) in changes {
        if id > MAX_ITEM_ID {
            return Err(bad(format!("item id {id} is out of range")));
        }
        let row = match row {
            None => None,
            Some((emb, feats)) => {
                if emb.len() != schema.dim || feats.len() != schema.feat_dim {
                    return Err(bad("an item of the wrong size"));
                }
                if !emb.iter().chain(&feats).all(|x| x.is_finite()) {
                    return Err(bad("an item holds a non-finite value"));
                }
                Some(Arc::new(ItemRow { emb, feats }))
            }
        };
        out.push((id, row));
    }
    Ok(out)
}

/// The wire code of an outcome.
pub(super) fn outcome_code(o: WriteOutcome) -> u8 {
    match o {
        WriteOutcome::Applied => 0,
        WriteOutcome::Duplicate => 1,
        WriteOutcome::NotFound => 2,
    }
}

/// The outcome of a wire code.
pub(super) fn outcome_of(code: u8) -> Option<WriteOutcome> {
    [
        WriteOutcome::Applied,
        WriteOutcome::Duplicate,
        WriteOutcome::NotFound,
    ]
    .get(code as usize)
    .copied()
}
