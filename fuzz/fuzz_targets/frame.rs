//! The frame decoder, and the node's session fed whatever it decodes, in every state.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| meridian::fuzz::frame(bytes));
