//! One scoring call, as the ranker runs it on the compute pool: the version a model
//! reference names now (a swap during the call changes only later calls) over every
//! candidate — or a cascade: a cheap first model (the distilled student) scores every
//! candidate, and the call's model re-ranks the first model's best `keep`. Rows and
//! time are counted by `name@version`.

use super::model::{top_k, Model, ScoreInput};
use super::repo::Models;
use crate::items::Items;
use crate::types::{Cascade, ModelRef, ScoreRequest};
use recd_runtime::RecdError;
use std::sync::Arc;

/// One score list per request, in candidate order, and what scored: `name@version`, or
/// `first@v>model@w` for a cascade.
pub type Scored = (Vec<Vec<f32>>, Arc<str>);

/// Scores every request's candidates with `model`, through `cascade` when given.
pub fn score(
    models: &Models,
    items: &Items,
    model: &ModelRef,
    cascade: Option<&Cascade>,
    requests: &[ScoreRequest],
) -> Result<Scored, RecdError> {
    let m = models.get(model)?;
    let inputs: Vec<ScoreInput<'_>> = (requests.iter())
        .map(|r| ScoreInput {
            profile: &r.profile,
            candidates: &r.candidates,
        })
        .collect();
    let Some(c) = cascade else {
        return Ok((run(models, &m, items, &inputs)?, Arc::clone(m.label())));
    };
    let first = models.get(&c.first)?;
    let cheap = run(models, &first, items, &inputs)?;
    let kept: Vec<Vec<u64>> = (inputs.iter().zip(&cheap))
        .map(|(i, s)| {
            (top_k(i.candidates, s, c.keep).into_iter())
                .map(|(id, _)| id)
                .collect()
        })
        .collect();
    let again: Vec<ScoreInput<'_>> = (inputs.iter().zip(&kept))
        .map(|(i, ids)| ScoreInput {
            profile: i.profile,
            candidates: ids,
        })
        .collect();
    let exact = run(models, &m, items, &again)?;
    let scores = (inputs.iter().zip(&cheap).zip(kept.iter().zip(&exact)))
        .map(|((i, cheap), (ids, exact))| merge(i.candidates, cheap, ids, exact))
        .collect();
    let label = format!("{}>{}", first.label(), m.label());
    Ok((scores, label.into()))
}

/// One score per candidate: the re-ranked ones keep the second model's scores; the rest
/// follow below the lowest of them, in the first model's order.
fn merge(candidates: &[u64], cheap: &[f32], kept: &[u64], exact: &[f32]) -> Vec<f32> {
    let floor = exact.iter().copied().fold(f32::INFINITY, f32::min);
    let floor = if floor.is_finite() { floor - 1.0 } else { 0.0 };
    let rest = top_k(candidates, cheap, candidates.len());
    let mut out = vec![0f32; candidates.len()];
    let at: std::collections::HashMap<u64, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let n = rest.len().max(1) as f32;
    for (rank, (id, _)) in rest.iter().enumerate() {
        out[at[id]] = floor - rank as f32 / n;
    }
    for (id, s) in kept.iter().zip(exact) {
        out[at[id]] = *s;
    }
    out
}

fn run(
    models: &Models,
    m: &Model,
    items: &Items,
    inputs: &[ScoreInput<'_>],
) -> Result<Vec<Vec<f32>>, RecdError> {
    let t = std::time::Instant::now();
    let scores =
        (m.score_batch(items, inputs)).map_err(|e| RecdError::internal(format!("{e:#}")))?;
    let metrics = models.metrics();
    let rows: usize = inputs.iter().map(|i| i.candidates.len()).sum();
    (metrics.model_rows.with_label_values(&[m.label()])).inc_by(rows as u64);
    (metrics.model_score_seconds.with_label_values(&[m.label()]))
        .observe(t.elapsed().as_secs_f64());
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::merge;
    use crate::ranker::model::top_k;

    #[test]
    fn a_cascade_keeps_the_second_models_order_on_top() {
        let ids = [10, 11, 12, 13, 14];
        let cheap = [0.1, 0.9, 0.8, 0.7, 0.2];
        // the first model's best three, re-scored: 12 wins, then 13, then 11
        let kept = [11, 12, 13];
        let exact = [5.0, 7.0, 6.0];
        let s = merge(&ids, &cheap, &kept, &exact);
        let order: Vec<u64> = top_k(&ids, &s, 5).into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, vec![12, 13, 11, 14, 10]);
        assert!(s.iter().all(|v| v.is_finite()));
    }
}
