//! The models a node's rankers serve: the repository folder
//! (`<dir>/<name>/<version>/model.yaml` and its file, Triton-like) and what of it is
//! loaded. Each name serves its newest version that loads and warms up (or the version
//! `models.pin` names), plus the versions experiments name explicitly (`ranker@2`).
//!
//! [`Models::scan`] runs on the loader thread (`ranker::loader`), never on a serving
//! thread: it loads and warms a new version, swaps it in under a short write lock, and
//! keeps the old one until no scoring call holds it ([`Models::release_retired`]), so
//! the old version's memory is freed off the hot path. A version that fails to load,
//! has the wrong input width or answers NaN at warm-up is refused (a warning and
//! `recd_model_loads_total{outcome="refused"}`), is not retried until its files change,
//! and the serving version goes on serving.

use super::model::Model;
use crate::data::Schema;
use crate::items::Items;
use crate::types::ModelRef;
use recd_runtime::config::valid_model_name;
use recd_runtime::metrics::Metrics;
use recd_runtime::RecdError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// What is loaded of one model name.
#[derive(Clone)]
struct Served {
    /// The newest (or pinned) version: what `name` alone runs.
    latest: Arc<Model>,
    /// Versions named explicitly (`name@v`).
    fixed: BTreeMap<u32, Arc<Model>>,
}

/// A refused version's files: not tried again until they change.
type Stamp = (SystemTime, u64);

/// The stamp of a version folder that does not exist.
const MISSING: Stamp = (SystemTime::UNIX_EPOCH, u64::MAX);

/// What a scan did, and what serves after it (the admin call's answer).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    /// Versions loaded and swapped in (`name@v`).
    pub loaded: Vec<String>,
    /// Versions refused, with why.
    pub refused: Vec<Refusal>,
    /// What serves now.
    pub serving: Vec<ServingModel>,
}

/// A refused version.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// `name@v` (or the folder that could not be read).
    pub model: String,
    /// The error.
    pub reason: String,
}

/// One served version.
#[derive(Debug, Clone, Serialize)]
pub struct ServingModel {
    /// `name@v`.
    pub model: String,
    /// Whether `name` alone runs it.
    pub latest: bool,
    /// `native` or `onnx`.
    pub format: &'static str,
}

/// The node's loaded models.
pub struct Models {
    schema: Schema,
    items: Arc<Items>,
    dir: Option<PathBuf>,
    pins: BTreeMap<String, u32>,
    wanted: BTreeSet<(String, u32)>,
    serving: RwLock<HashMap<String, Served>>,
    refusals: Mutex<HashMap<(String, u32), Stamp>>,
    retired: Mutex<Vec<Arc<Model>>>,
    metrics: Arc<Metrics>,
}

impl Models {
    /// An empty set over the repository `dir` (none: only what is installed).
    pub fn new(
        items: Arc<Items>,
        dir: Option<PathBuf>,
        pins: BTreeMap<String, u32>,
        wanted: impl IntoIterator<Item = ModelRef>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let wanted = (wanted.into_iter())
            .filter_map(|r| r.version.map(|v| (r.name.to_string(), v)))
            .collect();
        Self {
            schema: items.schema(),
            items,
            dir,
            pins,
            wanted,
            serving: RwLock::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// Serves `model` as the latest of `name` (the catalogue's `mlp.f32` as `ranker@0`,
    /// before the repository is scanned).
    pub fn install(&self, name: &str, model: Model) {
        self.swap_in(name, Arc::new(model), true);
    }

    /// The version `r` names: the latest of its name, or the exact version.
    pub fn get(&self, r: &ModelRef) -> Result<Arc<Model>, RecdError> {
        let serving = self.serving.read().unwrap_or_else(|p| p.into_inner());
        let s = (serving.get(&*r.name)).ok_or_else(|| {
            RecdError::unavailable(format!("model {:?} is not served here", r.name))
        })?;
        match r.version {
            None => Ok(Arc::clone(&s.latest)),
            Some(v) if s.latest.version() == v => Ok(Arc::clone(&s.latest)),
            Some(v) => (s.fixed.get(&v).cloned())
                .ok_or_else(|| RecdError::unavailable(format!("model {r} is not loaded here"))),
        }
    }

    /// The node's metrics (scoring counts by version).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What serves now, by name.
    pub fn serving(&self) -> Vec<ServingModel> {
        let serving = self.serving.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<ServingModel> = (serving.values())
            .flat_map(|s| {
                let latest = std::iter::once((&s.latest, true));
                latest.chain(s.fixed.values().map(|m| (m, false)))
            })
            .map(|(m, latest)| ServingModel {
                model: m.label().to_string(),
                latest,
                format: m.format(),
            })
            .collect();
        out.sort_by(|a, b| a.model.cmp(&b.model));
        out
    }

    /// Looks at the repository once: loads what is newer than what serves (or pinned,
    /// or named by an experiment), refusing what fails. Blocking and CPU-heavy: the
    /// loader thread's work.
    pub fn scan(&self) -> ScanReport {
        let mut report = ScanReport::default();
        if let Some(dir) = &self.dir {
            match model_folders(dir) {
                Ok(folders) => {
                    for (name, versions) in folders {
                        self.scan_model(dir, &name, &versions, &mut report);
                    }
                }
                Err(e) => report.refused.push(Refusal {
                    model: dir.display().to_string(),
                    reason: format!("{e:#}"),
                }),
            }
        }
        report.serving = self.serving();
        report
    }

    fn scan_model(&self, dir: &Path, name: &str, versions: &[u32], report: &mut ScanReport) {
        let current = self.get(&ModelRef::latest(name)).ok().map(|m| m.version());
        let pinned = self.pins.get(name).copied();
        // the newest that loads, down to what serves; a pinned version alone
        let targets: Vec<u32> = match pinned {
            Some(p) => vec![p],
            None => (versions.iter().rev().copied())
                .take_while(|&v| current.is_none_or(|c| v > c))
                .collect(),
        };
        for v in targets {
            if Some(v) == current {
                break;
            }
            if let Some(model) = self.try_load(dir, name, v, report) {
                self.swap_in(name, model, true);
                break;
            }
        }
        // after the swap: an exact version serves as the latest or from `fixed`
        let fixed = (self.wanted.iter()).filter(|(n, _)| n == name);
        for (_, v) in fixed {
            if self.get(&ModelRef::exact(name, *v)).is_err() {
                if let Some(model) = self.try_load(dir, name, *v, report) {
                    self.swap_in(name, model, false);
                }
            }
        }
    }

    /// Loads and warms `name@v` unless it was refused with its files as they are now
    /// (a missing folder counts as files too: it is tried again once it appears).
    fn try_load(
        &self,
        dir: &Path,
        name: &str,
        v: u32,
        report: &mut ScanReport,
    ) -> Option<Arc<Model>> {
        let folder = dir.join(name).join(v.to_string());
        let label = format!("{name}@{v}");
        let stamp = stamp(&folder).unwrap_or(MISSING);
        let key = (name.to_owned(), v);
        if self.refused(|r| r.get(&key) == Some(&stamp)) {
            return None;
        }
        let outcome = load_and_warm(&folder, (name, v), self.schema, &self.items);
        match outcome {
            Ok((model, took)) => {
                self.refused(|r| r.remove(&key));
                tracing::info!(model = %label, format = model.format(), warm_up_ms = took.as_secs_f64() * 1e3, "model loaded");
                self.metrics
                    .model_loads
                    .with_label_values(&[name, "loaded"])
                    .inc();
                report.loaded.push(label);
                Some(Arc::new(model))
            }
            Err(e) => {
                self.refused(|r| r.insert(key, stamp));
                let reason = format!("{e:#}");
                tracing::warn!(model = %label, %reason, "model refused; the serving version goes on");
                self.metrics
                    .model_loads
                    .with_label_values(&[name, "refused"])
                    .inc();
                report.refused.push(Refusal {
                    model: label,
                    reason,
                });
                None
            }
        }
    }

    fn refused<R>(&self, f: impl FnOnce(&mut HashMap<(String, u32), Stamp>) -> R) -> R {
        f(&mut self.refusals.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn swap_in(&self, name: &str, model: Arc<Model>, latest: bool) {
        let v = model.version();
        let old = {
            let mut serving = self.serving.write().unwrap_or_else(|p| p.into_inner());
            match serving.get_mut(name) {
                Some(s) if latest => {
                    let old = std::mem::replace(&mut s.latest, model);
                    // a replaced latest that an experiment names exactly keeps serving
                    match self.wanted.contains(&(name.to_owned(), old.version())) {
                        true => s.fixed.insert(old.version(), old),
                        false => Some(old),
                    }
                }
                Some(s) => s.fixed.insert(v, model),
                None => {
                    let fixed = BTreeMap::new();
                    serving.insert(
                        name.to_owned(),
                        Served {
                            latest: model,
                            fixed,
                        },
                    );
                    None
                }
            }
        };
        if latest {
            self.metrics
                .model_version
                .with_label_values(&[name])
                .set(i64::from(v));
        }
        if let Some(old) = old {
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(old);
        }
    }

    /// Frees the replaced versions no scoring call holds any more (the loader thread's
    /// job, so no serving thread pays for the drop); returns how many are still held.
    pub fn release_retired(&self) -> usize {
        let gone: Vec<Arc<Model>> = {
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            let (free, held) = retired.drain(..).partition(|m| Arc::strong_count(m) == 1);
            *retired = held;
            free
        };
        drop(gone);
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Loads and warms a version; a runtime that panics on the graph (tract 0.21 panics on
/// kernels it does not implement) refuses the version instead of ending the loader
/// thread.
pub fn load_and_warm(
    folder: &Path,
    (name, v): (&str, u32),
    schema: Schema,
    items: &Items,
) -> anyhow::Result<(Model, std::time::Duration)> {
    let run = || {
        let m = Model::load(folder, name, v, schema)?;
        let took = m.warm_up(items)?;
        Ok((m, took))
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(p) => {
            let why = (p.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            anyhow::bail!("the model runtime panicked loading it: {why}")
        }
    }
}

/// Model folders of the repository, each with its version numbers ascending (folders
/// whose names are not model names or whose versions are not numbers are ignored).
fn model_folders(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u32>)>> {
    use anyhow::Context;
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading model repository {}", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !valid_model_name(&name) || !e.path().is_dir() {
            continue;
        }
        let mut versions: Vec<u32> = std::fs::read_dir(e.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|v| v.path().is_dir())
            .filter_map(|v| {
                let s = v.file_name().to_string_lossy().into_owned();
                // canonical numbers only: `007` would not be the folder `7` names
                let canonical = !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s == "0" || !s.starts_with('0'));
                canonical.then(|| s.parse().ok()).flatten()
            })
            .collect();
        versions.sort_unstable();
        if !versions.is_empty() {
            out.push((name, versions));
        }
    }
    out.sort();
    Ok(out)
}

/// Newest modification time and total size of a version folder's files.
fn stamp(folder: &Path) -> Option<Stamp> {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut size = 0;
    for e in std::fs::read_dir(folder).ok()?.flatten() {
        let m = e.metadata().ok()?;
        newest = newest.max(m.modified().ok()?);
        size += m.len();
    }
    Some((newest, size))
}

#[cfg(test)]
mod tests;
