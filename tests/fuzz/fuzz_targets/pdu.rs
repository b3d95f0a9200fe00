//! Fuzz target: see `gw_tests::fuzzing::pdu`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_tests::fuzzing::pdu(data));
