//! The change-ingest path of sync: the first byte picks the document and the signer, the rest is sealed as that member and applied, rolled back.
#![no_main]

use std::sync::LazyLock;

use meridian::fuzz::Fixture;

/// Bo's node, joined to the fuzz world, made once per process in a directory kept for its
/// life.
static FIXTURE: LazyLock<(tempfile::TempDir, Fixture)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fixture = Fixture::new(&dir.path().join("bo")).expect("the fuzz fixture");
    (dir, fixture)
});

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::ingest(&FIXTURE.1, bytes));
