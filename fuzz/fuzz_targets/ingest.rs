//! The change-ingest path of sync: the first byte picks the document and the signer, the rest
//! is sealed as that member and applied, rolled back.
#![no_main]

mod fixture;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::ingest(fixture::get(), bytes));
