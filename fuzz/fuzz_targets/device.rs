//! Device codes (`meridian device join`) and device proofs (a relay's `Register::Device`):
//! decoding and the signature checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::device(bytes));
