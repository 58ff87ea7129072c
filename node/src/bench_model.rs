//! `recd-node bench-model`: what each model costs and how far it agrees with the
//! catalogue's teacher (`mlp.f32`, native), on real users and their exact top
//! candidates — the teacher in each runtime (native SGEMMs vs tract), a student, an
//! int8 graph, and the cascade (the student scores every candidate, the teacher
//! re-ranks its best N). A benchmark, not a test: figures from one run compare.

use anyhow::Context;
use recd_actors::candidates::index::brute_force;
use recd_actors::data::Catalogue;
use recd_actors::experiments::shadow::overlap_at_k;
use recd_actors::features::profile::{ProfileSource, SplitMix64};
use recd_actors::items::Items;
use recd_actors::ranker::model::{top_k, Model, ScoreInput};
use recd_actors::types::Profile;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// One model's figures.
#[derive(Debug, Serialize)]
pub struct ModelFigures {
    /// `name@version` (`ranker@0`: the catalogue's `mlp.f32`).
    pub model: String,
    /// `native` or `onnx`.
    pub format: &'static str,
    /// Microseconds per call of one request with `candidates` candidates.
    pub us_per_call: f64,
    /// Microseconds per `candidates` rows when 8 requests share a call (a micro-batch).
    pub us_per_request_batched: f64,
    /// Mean top-10 overlap with the teacher over the users.
    pub top10_agreement: f64,
}

/// The cascade's figures.
#[derive(Debug, Serialize)]
pub struct CascadeFigures {
    /// Student, then the teacher on its best `rerank`.
    pub student: String,
    /// Candidates the teacher re-ranks.
    pub rerank: usize,
    /// Microseconds per request (both calls).
    pub us_per_call: f64,
    /// Mean top-10 overlap with the teacher scoring every candidate.
    pub top10_agreement: f64,
}

/// What `bench-model` prints.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// Items in the catalogue.
    pub items: usize,
    /// Candidates per request.
    pub candidates: usize,
    /// Users agreement was measured on.
    pub users: usize,
    /// Per model, the teacher first.
    pub models: Vec<ModelFigures>,
    /// Per non-teacher model, as the first stage of a cascade.
    pub cascades: Vec<CascadeFigures>,
}

/// A version folder `<repo>/<name>/<version>` loaded for `cat`.
fn load(dir: &Path, items: &Items) -> anyhow::Result<Model> {
    let version: u32 = (dir.file_name().and_then(|v| v.to_str()))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{}: not a <name>/<version> folder", dir.display()))?;
    let name = (dir
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str()))
    .with_context(|| format!("{}: no model name", dir.display()))?;
    let schema = items.schema();
    recd_actors::ranker::repo::load_and_warm(dir, (name, version), schema, items).map(|(m, _)| m)
}

fn top10(model: &Model, items: &Items, p: &Profile, ids: &[u64]) -> anyhow::Result<Vec<u64>> {
    let input = [ScoreInput {
        profile: p,
        candidates: ids,
    }];
    let scores = model.score_batch(items, &input)?;
    Ok(top_k(ids, &scores[0], 10)
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Microseconds per call of `f`, over `calls` calls after a tenth as many to warm up.
fn time_calls(calls: usize, mut f: impl FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for i in 0..calls / 10 + 1 {
        f(i)?;
    }
    let t = Instant::now();
    for i in 0..calls {
        f(i)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / calls as f64)
}

/// Measures the teacher and each version in `dirs` over `users` users' top
/// `candidates` (exact inner product), and a cascade re-ranking `rerank` per student.
pub fn bench_model(
    data_dir: &Path,
    dirs: &[PathBuf],
    (users, candidates, calls, rerank): (usize, usize, usize, usize),
) -> anyhow::Result<ModelReport> {
    let cat = Arc::new(Catalogue::load(data_dir)?);
    let source = ProfileSource::new(&cat);
    let items = Items::new(Arc::clone(&cat));
    let mut rng = SplitMix64::new(17);
    let cases: Vec<(Arc<Profile>, Vec<u64>)> = (0..users)
        .map(|_| {
            let p = source.profile(&format!("u{}", rng.next_u64() % 10_000_000));
            let ids = brute_force(&cat, &p.emb, candidates);
            (p, ids)
        })
        .collect();
    let teacher = Model::builtin("ranker", &cat)?;
    let mut models = vec![teacher];
    for d in dirs {
        models.push(load(d, &items)?);
    }
    let truth: Vec<Vec<u64>> = (cases.iter())
        .map(|(p, ids)| top10(&models[0], &items, p, ids))
        .collect::<anyhow::Result<_>>()?;
    let mut report = ModelReport {
        items: cat.len(),
        candidates,
        users,
        models: Vec::new(),
        cascades: Vec::new(),
    };
    for m in &models {
        let one = time_calls(calls, |i| {
            let (p, ids) = &cases[i % users];
            top10(m, &items, p, ids).map(drop)
        })?;
        let batched = time_calls(calls / 8 + 1, |i| {
            let inputs: Vec<ScoreInput<'_>> = (0..8)
                .map(|j| &cases[(i * 8 + j) % users])
                .map(|(p, ids)| ScoreInput {
                    profile: p,
                    candidates: ids,
                })
                .collect();
            m.score_batch(&items, &inputs).map(drop)
        })? / 8.0;
        let mut agree = 0.0;
        for ((p, ids), t) in cases.iter().zip(&truth) {
            agree += overlap_at_k(t, &top10(m, &items, p, ids)?, 10);
        }
        report.models.push(ModelFigures {
            model: m.label().to_string(),
            format: m.format(),
            us_per_call: one,
            us_per_request_batched: batched,
            top10_agreement: agree / users as f64,
        });
    }
    for student in &models[1..] {
        let cascade = |p: &Profile, ids: &[u64]| -> anyhow::Result<Vec<u64>> {
            let input = [ScoreInput {
                profile: p,
                candidates: ids,
            }];
            let first = student.score_batch(&items, &input)?;
            let best: Vec<u64> = (top_k(ids, &first[0], rerank).into_iter())
                .map(|(id, _)| id)
                .collect();
            top10(&models[0], &items, p, &best)
        };
        let us = time_calls(calls, |i| {
            let (p, ids) = &cases[i % users];
            cascade(p, ids).map(drop)
        })?;
        let mut agree = 0.0;
        for ((p, ids), t) in cases.iter().zip(&truth) {
            agree += overlap_at_k(t, &cascade(p, ids)?, 10);
        }
        report.cascades.push(CascadeFigures {
            student: student.label().to_string(),
            rerank,
            us_per_call: us,
            top10_agreement: agree / users as f64,
        });
    }
    Ok(report)
}
