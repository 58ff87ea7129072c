//! Replies across the seam: an [`Answer`] into its wire form, and a peer's [`Reply`]
//! checked back into an `Answer` (ids inside the catalogue, values finite, labels
//! well-formed) before anything believes it.

use super::write;
use super::{Reply, WireProfile};
use crate::data::Schema;
use crate::stage::Answer;
use crate::types::{Candidate, ModelRef};
use recd_runtime::{ErrorCode, RecdError};
use std::sync::Arc;

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Profiles(p) => Reply::Profiles(
                p.iter()
                    .map(|p| p.as_deref().map(WireProfile::from))
                    .collect(),
            ),
            Answer::Candidates(lists) => Reply::Candidates(
                (lists.iter())
                    .map(|l| l.iter().map(|c| (c.id, c.distance)).collect())
                    .collect(),
            ),
            Answer::Scores { scores, model } => Reply::Scores(scores, model.to_string()),
            Answer::Written(o) => Reply::Written(o.into_iter().map(write::outcome_code).collect()),
            Answer::Applied(n) => Reply::Applied(n.min(u32::MAX as usize) as u32),
        }
    }
}

impl From<RecdError> for Reply {
    fn from(e: RecdError) -> Self {
        Reply::error(e.code.as_str(), e.message)
    }
}

impl Reply {
    /// The answer a peer sent, checked: profiles well-formed, candidate ids below `items`
    /// (the catalogue), every value finite; an error reply is that error.
    pub fn into_answer(self, items: usize, schema: Schema) -> Result<Answer, RecdError> {
        let malformed =
            |what: &str| RecdError::new(ErrorCode::Internal, format!("malformed reply: {what}"));
        match self {
            Reply::Profiles(p) => p
                .into_iter()
                .map(|p| p.map(|p| p.into_profile(schema).map(Arc::new)).transpose())
                .collect::<Result<_, _>>()
                .map(Answer::Profiles)
                .map_err(|e| malformed(&e)),
            Reply::Candidates(lists) => {
                let ok = |&(id, d): &(u64, f32)| (id as usize) < items && d.is_finite();
                if !lists.iter().flatten().all(ok) {
                    return Err(malformed("a candidate outside the catalogue"));
                }
                Ok(Answer::Candidates(
                    (lists.into_iter())
                        .map(|l| {
                            (l.into_iter())
                                .map(|(id, distance)| Candidate { id, distance })
                                .collect()
                        })
                        .collect(),
                ))
            }
            Reply::Scores(scores, model) => {
                if !scores.iter().flatten().all(|x| x.is_finite()) {
                    return Err(malformed("a non-finite score"));
                }
                // name@version, or first@v>model@w for a cascade
                let exact = |m: &str| ModelRef::parse(m).is_ok_and(|m| m.version.is_some());
                let parts: Vec<&str> = model.split('>').collect();
                if model.len() > 2 * ModelRef::MAX_LEN
                    || parts.len() > 2
                    || !parts.iter().all(|p| exact(p))
                {
                    return Err(malformed("a model label that is not name@version"));
                }
                Ok(Answer::Scores {
                    scores,
                    model: model.into(),
                })
            }
            Reply::Applied(n) => Ok(Answer::Applied(n as usize)),
            Reply::Written(codes) => codes
                .into_iter()
                .map(write::outcome_of)
                .collect::<Option<_>>()
                .map(Answer::Written)
                .ok_or_else(|| malformed("an unknown write outcome")),
            Reply::Error { code, message } => Err(RecdError::new(parse_code(&code), message)),
            Reply::Pong => Err(malformed("pong to a call")),
        }
    }
}

/// An error code from the wire; unknown ones count as internal (transient).
fn parse_code(code: &str) -> ErrorCode {
    serde_json::from_value(serde_json::Value::String(code.to_owned()))
        .unwrap_or(ErrorCode::Internal)
}
