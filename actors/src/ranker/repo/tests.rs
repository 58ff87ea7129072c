//! Scans of a real repository folder: newest first, refusals kept apart, pins, exact
//! versions for experiments, the old version freed only once no call holds it.

use super::*;
use crate::ranker::native::floats_for;
use crate::test_data::catalogue;

const WORKLOAD_YAML: &str =
    "format: native\ninputs: [cross, user_feats, item_feats]\nhidden: [4]\n";

/// A native version whose every weight is `w` (finite, so it loads; scores differ by `w`).
fn native_version(repo: &Path, name: &str, v: u32, w: f32) {
    let dir = repo.join(name).join(v.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let n = floats_for(96, &[4]);
    let bytes: Vec<u8> = std::iter::repeat_n(w, n)
        .flat_map(f32::to_le_bytes)
        .collect();
    std::fs::write(dir.join("weights.f32"), bytes).unwrap();
    std::fs::write(dir.join("model.yaml"), WORKLOAD_YAML).unwrap();
}

fn models(repo: &Path, pins: &[(&str, u32)], wanted: &[ModelRef]) -> (tempfile::TempDir, Models) {
    let (dir, cat) = catalogue(300);
    let items = Arc::new(Items::new(Arc::new(cat)));
    let pins = pins.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let m = Models::new(
        items,
        Some(repo.into()),
        pins,
        wanted.to_vec(),
        Arc::new(Metrics::new()),
    );
    (dir, m)
}

fn latest(m: &Models, name: &str) -> String {
    m.get(&ModelRef::latest(name)).unwrap().label().to_string()
}

#[test]
fn the_newest_version_that_loads_serves() {
    let repo = tempfile::tempdir().unwrap();
    native_version(repo.path(), "ranker", 1, 0.01);
    native_version(repo.path(), "ranker", 3, 0.02);
    // version 7 is not a version: no model.yaml
    std::fs::create_dir_all(repo.path().join("ranker/7")).unwrap();
    std::fs::create_dir_all(repo.path().join("ranker/latest")).unwrap();
    std::fs::create_dir_all(repo.path().join("bad name!/1")).unwrap();
    let (_d, m) = models(repo.path(), &[], &[]);
    let report = m.scan();
    // at start nothing serves: 7 is refused, then 3 loads
    assert_eq!(report.loaded, vec!["ranker@3"]);
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(
        report.refused[0].reason.contains("model.yaml"),
        "{report:?}"
    );
    assert_eq!(latest(&m, "ranker"), "ranker@3");
    // an unknown name or version is unavailable, not a crash
    assert!(m.get(&ModelRef::latest("nope")).is_err());
    assert!(m.get(&ModelRef::exact("ranker", 1)).is_err());
    // nothing changed: nothing is tried again
    let again = m.scan();
    assert!(
        again.loaded.is_empty() && again.refused.is_empty(),
        "{again:?}"
    );
}

#[test]
fn a_newer_version_swaps_in_and_the_old_is_freed_once_released() {
    let repo = tempfile::tempdir().unwrap();
    native_version(repo.path(), "ranker", 1, 0.01);
    let (_d, m) = models(repo.path(), &[], &[]);
    m.scan();
    let held = m.get(&ModelRef::latest("ranker")).unwrap(); // a scoring call in flight
    native_version(repo.path(), "ranker", 2, 0.02);
    assert_eq!(m.scan().loaded, vec!["ranker@2"]);
    assert_eq!(latest(&m, "ranker"), "ranker@2");
    assert_eq!(
        held.label().as_ref(),
        "ranker@1",
        "the call keeps its version"
    );
    assert_eq!(m.release_retired(), 1, "still held by the call");
    drop(held);
    assert_eq!(m.release_retired(), 0);
    // a broken newer version leaves version 2 serving; fixing its files retries it
    let dir = repo.path().join("ranker/3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.yaml"), WORKLOAD_YAML).unwrap();
    std::fs::write(dir.join("weights.f32"), [0u8; 12]).unwrap();
    let r = m.scan();
    assert!(r.refused[0].reason.contains("floats"), "{r:?}");
    assert_eq!(latest(&m, "ranker"), "ranker@2");
    native_version(repo.path(), "ranker", 3, 0.03);
    assert_eq!(m.scan().loaded, vec!["ranker@3"]);
}

#[test]
fn pins_and_exact_versions() {
    let repo = tempfile::tempdir().unwrap();
    for v in 1..=3 {
        native_version(repo.path(), "ranker", v, 0.01 * v as f32);
    }
    native_version(repo.path(), "student", 1, 0.05);
    let wanted = [ModelRef::exact("ranker", 1), ModelRef::latest("student")];
    let (_d, m) = models(repo.path(), &[("ranker", 2)], &wanted);
    let mut report = m.scan();
    report.loaded.sort();
    assert_eq!(report.loaded, vec!["ranker@1", "ranker@2", "student@1"]);
    assert_eq!(latest(&m, "ranker"), "ranker@2", "pinned below the newest");
    assert_eq!(
        m.get(&ModelRef::exact("ranker", 1))
            .unwrap()
            .label()
            .as_ref(),
        "ranker@1"
    );
    assert_eq!(
        m.get(&ModelRef::exact("ranker", 2))
            .unwrap()
            .label()
            .as_ref(),
        "ranker@2"
    );
    let serving: Vec<_> = m
        .serving()
        .into_iter()
        .map(|s| (s.model, s.latest))
        .collect();
    assert_eq!(
        serving,
        vec![
            ("ranker@1".into(), false),
            ("ranker@2".into(), true),
            ("student@1".into(), true)
        ]
    );
}

#[test]
fn an_installed_builtin_serves_until_the_repository_has_the_name() {
    let repo = tempfile::tempdir().unwrap();
    let (_d, m) = models(repo.path(), &[], &[]);
    let (_d2, cat) = catalogue(300);
    m.install("ranker", Model::builtin("ranker", &cat).unwrap());
    assert!(m.scan().loaded.is_empty());
    assert_eq!(latest(&m, "ranker"), "ranker@0");
    native_version(repo.path(), "ranker", 1, 0.01);
    m.scan();
    assert_eq!(latest(&m, "ranker"), "ranker@1");
}

#[test]
fn an_exact_version_an_experiment_names_survives_a_newer_one() {
    let repo = tempfile::tempdir().unwrap();
    native_version(repo.path(), "ranker", 1, 0.01);
    let (_d, m) = models(repo.path(), &[], &[ModelRef::exact("ranker", 1)]);
    m.scan();
    native_version(repo.path(), "ranker", 2, 0.02);
    assert_eq!(m.scan().loaded, vec!["ranker@2"]);
    assert_eq!(latest(&m, "ranker"), "ranker@2");
    let one = m.get(&ModelRef::exact("ranker", 1)).unwrap();
    assert_eq!(
        one.label().as_ref(),
        "ranker@1",
        "still served for its variant"
    );
    drop(one);
    assert_eq!(
        m.release_retired(),
        0,
        "nothing retired: version 1 moved to fixed"
    );
}

#[test]
fn a_missing_or_zero_padded_version_is_refused_once() {
    let repo = tempfile::tempdir().unwrap();
    native_version(repo.path(), "ranker", 1, 0.01);
    // "007" is not version 7's folder: ignored; a pinned version 9 does not exist
    std::fs::rename(repo.path().join("ranker/1"), repo.path().join("ranker/007")).unwrap();
    native_version(repo.path(), "ranker", 1, 0.01);
    let (_d, m) = models(repo.path(), &[("ranker", 9)], &[]);
    let first = m.scan();
    assert_eq!(first.refused.len(), 1, "{first:?}");
    assert!(
        m.scan().refused.is_empty(),
        "not retried while nothing changed"
    );
    native_version(repo.path(), "ranker", 9, 0.03);
    assert_eq!(m.scan().loaded, vec!["ranker@9"]);
}
