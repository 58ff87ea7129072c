//! The values that cross stages: what a feature shard answers and the ranker consumes
//! ([`Profile`]), what an index shard answers ([`Candidate`]), what the ranker is asked
//! ([`ScoreRequest`]), and the writes the ingress sends a feature shard ([`WriteOp`],
//! answered per op with a [`WriteOutcome`]). Stages import these, never each other.

use crate::data::Schema;
use crate::items::ItemRow;
use std::sync::Arc;

/// A user's features: what the ranker and the ANN query need, sized by the catalogue's
/// [`Schema`] (every producer checks it: the derived rule, the store's decoder, the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// L2-normalised user embedding (`schema.dim` floats).
    pub emb: Vec<f32>,
    /// Dense user features (`schema.feat_dim` floats).
    pub feats: Vec<f32>,
    /// False for the default profile of an unknown id.
    pub known: bool,
    /// Items the user interacted with lately, most recent first: never recommended back.
    pub recent: Vec<u64>,
}

/// A candidate from a shard: item id and distance (smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Global item id.
    pub id: u64,
    /// Index distance (for inner product: 1 − ⟨q, x⟩ on f32/f16).
    pub distance: f32,
}

/// Which model a scoring call runs: a name (its newest or pinned version) or an exact
/// `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// The model's name (a folder of the repository).
    pub name: Arc<str>,
    /// An exact version; `None`: whatever the name serves.
    pub version: Option<u32>,
}

impl ModelRef {
    /// Longest `name@version` accepted.
    pub const MAX_LEN: usize = 80;

    /// Whatever `name` serves.
    pub fn latest(name: &str) -> Self {
        Self {
            name: name.into(),
            version: None,
        }
    }

    /// Exactly `name@version`.
    pub fn exact(name: &str, version: u32) -> Self {
        Self {
            name: name.into(),
            version: Some(version),
        }
    }

    /// Parses `name` or `name@version`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                let v = v
                    .parse()
                    .map_err(|_| format!("model {s:?}: version out of range"))?;
                (n, Some(v))
            }
            Some(_) => return Err(format!("model {s:?}: the version after @ must be a number")),
            None => (s, None),
        };
        if !recd_runtime::config::valid_model_name(name) {
            return Err(format!("model {s:?}: a name is 1..=64 of [A-Za-z0-9_-]"));
        }
        Ok(Self {
            name: name.into(),
            version,
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A cascade: `first` scores every candidate, the call's model re-ranks its best `keep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cascade {
    /// The cheap first model (a distilled student).
    pub first: ModelRef,
    /// Candidates the call's model re-ranks (1..=4096).
    pub keep: usize,
}

/// One request to score: the user's profile and its merged candidates.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    /// The user's profile.
    pub profile: Arc<Profile>,
    /// Candidate item ids.
    pub candidates: Vec<u64>,
}

/// What a user did with an item (`POST /v1/events`); each kind moves the profile by its
/// own rate (see `features::fold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The item was shown and looked at.
    View,
    /// The item was clicked.
    Click,
    /// The user liked the item.
    Like,
    /// The item went into the cart.
    AddToCart,
    /// The item was bought.
    Purchase,
    /// The item was shown and passed over (moves the profile away from it).
    Skip,
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 6] = [
        EventKind::View,
        EventKind::Click,
        EventKind::Like,
        EventKind::AddToCart,
        EventKind::Purchase,
        EventKind::Skip,
    ];

    /// The name in the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Click => "click",
            EventKind::Like => "like",
            EventKind::AddToCart => "add_to_cart",
            EventKind::Purchase => "purchase",
            EventKind::Skip => "skip",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Its number on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind numbered `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }
}

/// One write to the profile of a user owned by a feature shard (validated by the caller
/// and again by the shard's endpoint for a peer's bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Replace the user's profile (an offline job's output).
    Upsert {
        /// The user.
        user: Arc<str>,
        /// Embedding (normalised on write).
        emb: Vec<f32>,
        /// Dense features.
        feats: Vec<f32>,
        /// Recent items, most recent first.
        recent: Vec<u64>,
    },
    /// Erase the user from the store and every cache.
    Delete {
        /// The user.
        user: Arc<str>,
    },
    /// Fold one event into the user's profile, once per `event_id`.
    Event {
        /// The client's id of the event: a retried event with the same id is skipped.
        event_id: Arc<str>,
        /// The user.
        user: Arc<str>,
        /// The item.
        item: u64,
        /// What happened.
        kind: EventKind,
        /// Strength (1.0 for one ordinary event).
        weight: f32,
        /// Unix seconds when it happened.
        ts: u64,
    },
}

/// Most bytes of a user or event id.
pub const MAX_ID_BYTES: usize = 256;
/// Largest event weight.
pub const MAX_WEIGHT: f32 = 100.0;

/// Why an id is refused, if it is: empty, too long or not printable.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!("{what} must be 1..={MAX_ID_BYTES} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{what} must be printable"));
    }
    Ok(())
}

impl WriteOp {
    /// Why this write is refused, if it is: ids, shapes (`schema`), finiteness, items
    /// `item_ok` knows, at most `max_recent` recent items, weights in (0, 100].
    pub fn check(
        &self,
        schema: Schema,
        item_ok: &dyn Fn(u64) -> bool,
        max_recent: usize,
    ) -> Result<(), String> {
        check_id("user_id", self.user())?;
        match self {
            WriteOp::Upsert {
                emb, feats, recent, ..
            } => {
                if emb.len() != schema.dim || feats.len() != schema.feat_dim {
                    return Err(format!(
                        "embedding must have {} floats and features {} (got {} and {})",
                        schema.dim,
                        schema.feat_dim,
                        emb.len(),
                        feats.len()
                    ));
                }
                if !emb.iter().chain(feats).all(|x| x.is_finite()) {
                    return Err("embedding and features must be finite".into());
                }
                // stored as f16 (features::codec): beyond its range a value would not
                // read back
                if emb.iter().chain(feats).any(|x| x.abs() > 65504.0) {
                    return Err("embedding and features must be within ±65504".into());
                }
                let norm = emb
                    .iter()
                    .map(|&x| f64::from(x).powi(2))
                    .sum::<f64>()
                    .sqrt();
                if norm < 1e-6 {
                    return Err("embedding must not be all zeros (norm below 1e-6)".into());
                }
                if recent.len() > max_recent {
                    return Err(format!("at most {max_recent} recent_items"));
                }
                if let Some(id) = recent.iter().find(|&&id| !item_ok(id)) {
                    return Err(format!("recent_items: unknown item {id}"));
                }
                Ok(())
            }
            WriteOp::Delete { .. } => Ok(()),
            WriteOp::Event {
                event_id,
                item,
                weight,
                ..
            } => {
                check_id("event_id", event_id)?;
                if !item_ok(*item) {
                    return Err(format!("unknown item {item}"));
                }
                if !(weight.is_finite() && *weight > 0.0 && *weight <= MAX_WEIGHT) {
                    return Err(format!("weight must be in (0, {MAX_WEIGHT}]"));
                }
                Ok(())
            }
        }
    }

    /// The user written.
    pub fn user(&self) -> &Arc<str> {
        match self {
            WriteOp::Upsert { user, .. }
            | WriteOp::Delete { user }
            | WriteOp::Event { user, .. } => user,
        }
    }
}

/// What became of one [`WriteOp`], once durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Applied and durable.
    Applied,
    /// An event whose id was applied before: skipped.
    Duplicate,
    /// A delete of a user the store did not hold.
    NotFound,
}

/// Item upserts (`Some`) and deletes (`None`) for an index shard, in order.
pub type ItemChanges = Arc<Vec<(u64, Option<Arc<ItemRow>>)>>;
