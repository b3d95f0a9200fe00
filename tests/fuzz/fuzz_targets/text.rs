//! Fuzz target: see `gw_tests::fuzzing::text_keys`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_tests::fuzzing::text_keys(data));
