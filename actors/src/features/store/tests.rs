//! The embedded store on a real redb file: durable across reopen, atomic per job, event
//! ids applied once, erasure, and one fsync shared by many writers.

use super::embedded::{Embedded, WriterSettings};
use super::*;
use crate::data::{dot, Catalogue, Schema};
use crate::types::EventKind;
use std::sync::mpsc;
use std::time::Duration;

fn settings(cat: &Arc<Catalogue>, commit_seconds: prometheus::Histogram) -> WriterSettings {
    WriterSettings {
        fold: FoldContext {
            source: ProfileSource::new(cat),
            items: Arc::new(crate::items::Items::new(Arc::clone(cat))),
            max_recent: 16,
        },
        dedupe_window: Duration::from_secs(3600),
        commit_seconds,
        layout: (0, 1),
        window: Duration::ZERO,
    }
}

fn histogram() -> prometheus::Histogram {
    prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap()
}

fn event(id: &str, user: &str, item: u64) -> WriteOp {
    WriteOp::Event {
        event_id: Arc::from(id),
        user: Arc::from(user),
        item,
        kind: EventKind::Click,
        weight: 1.0,
        ts: 1_700_000_000,
    }
}

/// Writes `ops` as one job and waits for it to be durable.
fn write(store: &Embedded, ops: Vec<WriteOp>) -> Result<Committed, String> {
    let (tx, rx) = mpsc::channel();
    store
        .write(ops, Box::new(move |r| tx.send(r).unwrap()))
        .map_err(|e| e.message)?;
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap()
        .map_err(|e| e.message)
}

fn read(store: &Embedded, users: &[Arc<str>]) -> Vec<Option<Vec<u8>>> {
    let r = store.read(users, Duration::from_secs(1));
    futures_util::FutureExt::now_or_never(r)
        .expect("an embedded read is ready at once")
        .unwrap()
}

fn profile_of(store: &Embedded, user: &str) -> Option<Stored> {
    let bytes = read(store, &[Arc::from(user)]).pop().unwrap()?;
    Some(codec::decode(&bytes, Schema::WORKLOAD).unwrap())
}

#[test]
fn acknowledged_writes_survive_a_reopen_and_events_apply_once() {
    let (_d, cat) = crate::test_data::catalogue(500);
    let cat = Arc::new(cat);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features-0.redb");
    {
        let store = Embedded::open(&path, settings(&cat, histogram())).unwrap();
        let done = write(
            &store,
            vec![event("e1", "alice", 7), event("e2", "alice", 9)],
        )
        .unwrap();
        assert_eq!(done.outcomes, vec![WriteOutcome::Applied; 2]);
        assert_eq!(done.changed.len(), 1, "one user changed");
    }
    let store = Embedded::open(&path, settings(&cat, histogram())).unwrap();
    let Some(Stored::Profile(p, at)) = profile_of(&store, "alice") else {
        panic!("alice is not stored")
    };
    assert_eq!(p.recent, vec![9, 7]);
    assert_eq!(at, 1_700_000_000);
    assert!(p.known);
    // the same ids again, after the reopen: skipped; a new one applies
    let again = write(
        &store,
        vec![event("e1", "alice", 7), event("e3", "alice", 11)],
    )
    .unwrap();
    assert_eq!(
        again.outcomes,
        vec![WriteOutcome::Duplicate, WriteOutcome::Applied]
    );
    let Some(Stored::Profile(q, _)) = profile_of(&store, "alice") else {
        panic!("alice is not stored")
    };
    assert_eq!(q.recent, vec![11, 9, 7]);
    assert!(dot(&q.emb, cat.item(11)) > dot(&p.emb, cat.item(11)));
    assert_eq!(store.profiles().unwrap(), 1);
    drop(store);
    // the same file under another shard layout is refused
    let mut moved = settings(&cat, histogram());
    moved.layout = (0, 4);
    let err = Embedded::open(&path, moved).err().expect("refused");
    assert!(
        format!("{err:#}").contains("features.shards changed"),
        "{err:#}"
    );
}

#[test]
fn a_job_that_cannot_apply_changes_nothing() {
    let (_d, cat) = crate::test_data::catalogue(500);
    let cat = Arc::new(cat);
    let dir = tempfile::tempdir().unwrap();
    let store = Embedded::open(&dir.path().join("s.redb"), settings(&cat, histogram())).unwrap();
    let bad = write(
        &store,
        vec![event("e1", "bob", 3), event("e2", "bob", 10_000)],
    );
    assert!(bad.unwrap_err().contains("unknown item 10000"));
    assert_eq!(
        profile_of(&store, "bob"),
        None,
        "the good half was not applied"
    );
    // and the id of the good half is not spent
    let ok = write(&store, vec![event("e1", "bob", 3)]).unwrap();
    assert_eq!(ok.outcomes, vec![WriteOutcome::Applied]);
}

#[test]
fn upserts_and_erasure() {
    let (_d, cat) = crate::test_data::catalogue(500);
    let cat = Arc::new(cat);
    let dir = tempfile::tempdir().unwrap();
    let store = Embedded::open(&dir.path().join("s.redb"), settings(&cat, histogram())).unwrap();
    let upsert = WriteOp::Upsert {
        user: Arc::from("carol"),
        emb: cat.item(5).iter().map(|x| x * 3.0).collect(),
        feats: vec![0.5; Schema::WORKLOAD.feat_dim],
        recent: vec![1, 2],
    };
    write(&store, vec![upsert]).unwrap();
    let Some(Stored::Profile(p, _)) = profile_of(&store, "carol") else {
        panic!("carol is not stored")
    };
    assert!(
        (dot(&p.emb, &p.emb) - 1.0).abs() < 1e-2,
        "normalised on write"
    );
    assert_eq!(p.recent, vec![1, 2]);
    let del = |u: &str| {
        write(&store, vec![WriteOp::Delete { user: Arc::from(u) }])
            .unwrap()
            .outcomes
    };
    assert_eq!(del("carol"), vec![WriteOutcome::Applied]);
    assert_eq!(profile_of(&store, "carol"), None);
    assert_eq!(del("carol"), vec![WriteOutcome::NotFound]);
    // a demo user is erased with a marker, so its derived profile does not come back
    assert_eq!(del("u42"), vec![WriteOutcome::Applied]);
    assert_eq!(profile_of(&store, "u42"), Some(Stored::Erased));
    assert_eq!(del("u42"), vec![WriteOutcome::NotFound]);
}

#[test]
fn concurrent_writers_share_commits() {
    let (_d, cat) = crate::test_data::catalogue(500);
    let cat = Arc::new(cat);
    let dir = tempfile::tempdir().unwrap();
    let commits = histogram();
    let store =
        Embedded::open(&dir.path().join("s.redb"), settings(&cat, commits.clone())).unwrap();
    let (tx, rx) = mpsc::channel();
    let jobs = 200;
    for j in 0..jobs {
        let tx = tx.clone();
        let op = event(&format!("e{j}"), &format!("user{}", j % 17), j as u64);
        store
            .write(vec![op], Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
    }
    let applied = (0..jobs)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap())
        .filter(|c| c.outcomes == [WriteOutcome::Applied])
        .count();
    assert_eq!(applied, jobs);
    let n = commits.get_sample_count();
    assert!(
        n < jobs as u64 / 2,
        "{n} commits for {jobs} jobs: not grouped"
    );
    let users: Vec<Arc<str>> = (0..17).map(|u| Arc::from(format!("user{u}"))).collect();
    assert!(read(&store, &users).iter().all(Option::is_some));
}
