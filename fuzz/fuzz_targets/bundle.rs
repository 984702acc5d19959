//! The bundle and saved-document reader behind `merge`, then the all-or-nothing apply, rolled
//! back.
#![no_main]

mod fixture;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::bundle(fixture::get(), bytes));
