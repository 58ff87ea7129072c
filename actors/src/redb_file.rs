//! Opening a redb file (the feature stores, the item store). redb locks a file for one
//! `Database` per process; a store being replaced in this process (a node stopped and
//! started again, as in tests) may still be closing — its writer thread finishing its
//! last commit — so opening waits up to five seconds for it to let go.

use anyhow::Context;
use redb::{Database, DatabaseError};
use std::path::Path;
use std::time::{Duration, Instant};

/// Opens or creates the database at `path` (and its folder).
pub fn open(path: &Path) -> anyhow::Result<Database> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        match Database::create(path) {
            Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.with_context(|| format!("opening {}", path.display())),
        }
    }
}
