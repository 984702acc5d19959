//! The envelope opener: decode, shape, signature, workspace, decryption, bounded decompression,
//! change parsing and the actor check.
#![no_main]

mod fixture;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::envelope(fixture::get(), bytes));
