//! The envelope opener: decode, shape, signature, workspace, decryption, bounded decompression, change parsing and the actor check.
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

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::envelope(&FIXTURE.1, bytes));
