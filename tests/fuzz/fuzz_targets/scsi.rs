//! Fuzz target: see `gw_tests::fuzzing::scsi`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gw_tests::fuzzing::scsi(data));
