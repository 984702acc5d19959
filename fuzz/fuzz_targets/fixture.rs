//! Bo's node, joined to the fuzz world: made once per process, in a temporary directory
//! kept for the process's life, for the targets that need a store.

use std::sync::LazyLock;

use meridian::fuzz::Fixture;

static FIXTURE: LazyLock<(tempfile::TempDir, Fixture)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fixture = Fixture::new(&dir.path().join("bo")).expect("the fuzz fixture");
    (dir, fixture)
});

/// The process's fixture.
pub fn get() -> &'static Fixture {
    &FIXTURE.1
}
