//! Keyring records: decoding, the rules an epoch is checked against, unwrapping, the parents'
//! secrets, and the store keeping and settling one as it would from the network.
#![no_main]

mod fixture;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::keyring(fixture::get(), bytes));
