//! Small generated catalogues for unit tests.

use crate::data::Catalogue;

/// A fresh catalogue of `n` items in a temporary folder (kept alive by the guard).
pub(crate) fn catalogue(n: usize) -> (tempfile::TempDir, Catalogue) {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::datagen::generate(dir.path(), n, 42, |_| {}).expect("generating test data");
    let cat = Catalogue::load(dir.path()).expect("loading test data");
    (dir, cat)
}
