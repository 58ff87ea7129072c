//! One scoring call, as the ranker runs it on the compute pool: the version a model
//! reference names now (a swap during the call changes only later calls) over every
//! candidate — or a cascade: a cheap first model (the distilled student) scores every
//! candidate, and the call's model re-ranks the first model's best `keep`. Rows and
//! time are counted by `name@version`.

use super::model::{Model, ScoreInput};
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
    // per request: candidate positions best first by the first model; its best `keep`
    let orders: Vec<Vec<usize>> = (inputs.iter().zip(&cheap))
        .map(|(i, s)| order(i.candidates, s))
        .collect();
    let kept: Vec<Vec<u64>> = (inputs.iter().zip(&orders))
        .map(|(i, o)| o.iter().take(c.keep).map(|&at| i.candidates[at]).collect())
        .collect();
    let again: Vec<ScoreInput<'_>> = (inputs.iter().zip(&kept))
        .map(|(i, ids)| ScoreInput {
            profile: i.profile,
            candidates: ids,
        })
        .collect();
    let exact = run(models, &m, items, &again)?;
    let scores = orders
        .iter()
        .zip(&exact)
        .map(|(o, e)| merge(o, e))
        .collect();
    let label = format!("{}>{}", first.label(), m.label());
    Ok((scores, label.into()))
}

/// Candidate positions by score descending, ties by smaller id (the order of `top_k`).
fn order(ids: &[u64], scores: &[f32]) -> Vec<usize> {
    let mut at: Vec<usize> = (0..ids.len()).collect();
    at.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(ids[a].cmp(&ids[b])));
    at
}

/// One score per candidate, given the first model's `order` and the second model's
/// scores of its first `exact.len()`: those keep them; the rest follow below the lowest,
/// in the first model's order.
fn merge(order: &[usize], exact: &[f32]) -> Vec<f32> {
    let floor = exact.iter().copied().fold(f32::INFINITY, f32::min);
    let floor = if floor.is_finite() { floor - 1.0 } else { 0.0 };
    let n = order.len().max(1) as f32;
    let mut out = vec![0f32; order.len()];
    for (rank, &at) in order.iter().enumerate() {
        out[at] = exact.get(rank).copied().unwrap_or(floor - rank as f32 / n);
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
    use super::{merge, order};
    use crate::ranker::model::top_k;

    #[test]
    fn a_cascade_keeps_the_second_models_order_on_top() {
        let ids = [10, 11, 12, 13, 14];
        let cheap = [0.1, 0.9, 0.8, 0.7, 0.2];
        // the first model's best three (11, 12, 13), re-scored: 12 wins, then 13, then 11
        let first = order(&ids, &cheap);
        assert_eq!(
            first[..3].iter().map(|&i| ids[i]).collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        let exact = [5.0, 7.0, 6.0];
        let s = merge(&first, &exact);
        let order: Vec<u64> = top_k(&ids, &s, 5).into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, vec![12, 13, 11, 14, 10]);
        assert!(s.iter().all(|v| v.is_finite()));
    }
}
