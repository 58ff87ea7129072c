//! The degradation ladder (DESIGN.md §8.3): which rungs a batch can still afford, from
//! its remaining budget and online per-stage time models. Pure; unit-tested alone.
//!
//! 1. features — a cached profile up to the lane's maximum age; a miss is fetched if the
//!    budget pays for the whole pipeline after it, else the default profile
//!    (`degraded: features`);
//! 2. candidates — the shard calls get what is left after a truncated re-rank; shards
//!    that miss it are cut and `coverage` drops (`degraded: candidates`);
//! 3. ranking — every candidate if the budget pays for it, else (with `models.fallback`)
//!    every candidate by the cheaper fallback model, a distilled student
//!    (`degraded: rank_student`), else the best `truncate_to` by ANN order
//!    (`degraded: rank_truncated`), else none: ANN order (`degraded: ranker`).
//!
//! Hedged shard reads belong to replicated shards (the cluster).

use recd_runtime::batching::ServiceModel;
use std::time::Duration;

/// Online time models of the three stages, per batch size.
#[derive(Debug, Clone)]
pub struct StageModels {
    /// Feature fetch.
    pub features: ServiceModel,
    /// ANN scatter-gather.
    pub candidates: ServiceModel,
    /// Scoring every candidate.
    pub rank: ServiceModel,
    /// Scoring every candidate with the fallback model.
    pub fallback: ServiceModel,
}

impl Default for StageModels {
    fn default() -> Self {
        Self {
            features: ServiceModel::new(Duration::from_micros(200)),
            candidates: ServiceModel::new(Duration::from_millis(1)),
            rank: ServiceModel::new(Duration::from_micros(500)),
            fallback: ServiceModel::new(Duration::from_micros(250)),
        }
    }
}

/// How much of the candidate list to re-rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankPlan {
    /// Every candidate.
    Full,
    /// Every candidate, by the fallback model.
    Fallback,
    /// Only the best `n` by ANN order.
    Truncate(usize),
    /// No scoring: ANN order.
    Skip,
}

impl StageModels {
    fn rank_share(&self, b: usize, n: usize, candidates: usize) -> Duration {
        self.rank
            .predict(b)
            .mul_f64(n as f64 / candidates.max(1) as f64)
    }

    /// Whether a batch of `b` with `remaining` budget may fetch profiles missing from the
    /// cache (else those users get the default profile).
    pub fn fetch_features(
        &self,
        remaining: Duration,
        b: usize,
        candidates: usize,
        truncate_to: usize,
    ) -> bool {
        remaining
            >= self.features.predict(b)
                + self.candidates.predict(b)
                + self.rank_share(b, truncate_to, candidates)
    }

    /// The least a batch of `b` can do for a request: search its candidates (with cached
    /// or default profiles) and answer them in ANN order. A request with less time left
    /// cannot be served by the batch at all.
    pub fn least(&self, b: usize) -> Duration {
        self.candidates.predict(b)
    }

    /// Budget for the shard calls: what is left after reserving a truncated re-rank.
    pub fn candidates_budget(
        &self,
        remaining: Duration,
        b: usize,
        candidates: usize,
        truncate_to: usize,
    ) -> Duration {
        remaining.saturating_sub(self.rank_share(b, truncate_to, candidates))
    }

    /// How to rank a batch of `b` with `remaining` budget (`fallback`: whether a
    /// fallback model is configured).
    pub fn plan_rank(
        &self,
        remaining: Duration,
        b: usize,
        (candidates, truncate_to): (usize, usize),
        fallback: bool,
    ) -> RankPlan {
        if remaining >= self.rank.predict(b) {
            RankPlan::Full
        } else if fallback && remaining >= self.fallback.predict(b) {
            RankPlan::Fallback
        } else if truncate_to < candidates
            && remaining >= self.rank_share(b, truncate_to, candidates)
        {
            RankPlan::Truncate(truncate_to)
        } else {
            RankPlan::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn models() -> StageModels {
        let mut m = StageModels::default();
        m.features.observe(8, MS);
        m.candidates.observe(8, MS * 4);
        m.rank.observe(8, MS * 4);
        m
    }

    #[test]
    fn features_are_skipped_only_when_the_rest_cannot_be_paid() {
        let m = models();
        // features 1 + candidates 4 + truncated rank (50/200 of 4 = 1): 6 ms
        assert!(m.fetch_features(MS * 6, 8, 200, 50));
        assert!(!m.fetch_features(MS * 5, 8, 200, 50));
    }

    #[test]
    fn rank_rungs_follow_the_budget() {
        let m = models();
        assert_eq!(m.plan_rank(MS * 4, 8, (200, 50), false), RankPlan::Full);
        assert_eq!(
            m.plan_rank(MS * 3, 8, (200, 50), false),
            RankPlan::Truncate(50)
        );
        assert_eq!(m.plan_rank(MS, 8, (200, 50), false), RankPlan::Truncate(50));
        assert_eq!(m.plan_rank(MS / 2, 8, (200, 50), false), RankPlan::Skip);
        assert_eq!(
            m.plan_rank(MS * 3, 8, (50, 50), false),
            RankPlan::Skip,
            "nothing to truncate"
        );
    }

    #[test]
    fn the_fallback_model_comes_before_truncation() {
        let mut m = models();
        m.fallback.observe(8, MS * 2);
        assert_eq!(m.plan_rank(MS * 4, 8, (200, 50), true), RankPlan::Full);
        assert_eq!(m.plan_rank(MS * 3, 8, (200, 50), true), RankPlan::Fallback);
        assert_eq!(
            m.plan_rank(MS * 3 / 2, 8, (200, 50), true),
            RankPlan::Truncate(50)
        );
        assert_eq!(m.plan_rank(MS / 2, 8, (200, 50), true), RankPlan::Skip);
    }

    #[test]
    fn shard_calls_leave_room_for_a_truncated_rank() {
        let m = models();
        assert_eq!(m.candidates_budget(MS * 10, 8, 200, 50), MS * 9);
        assert_eq!(m.candidates_budget(MS / 2, 8, 200, 50), Duration::ZERO);
    }
}
