//! Replays every input the fuzzers ever found to crash a harness (tests/fuzz/regressions),
//! and a batch of pseudo-random inputs, through the same harnesses on stable Rust.

use gw_tests::fuzzing::{replay_all, TARGETS};

#[test]
fn saved_crashes_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let ran = replay_all(&dir);
    println!("replayed {ran} saved inputs");
}

#[test]
fn pseudo_random_inputs_do_not_panic() {
    // A fixed xorshift sequence: the same inputs every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..2000 {
        let len = (next() % 600) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let (_, harness) = TARGETS[round % TARGETS.len()];
        harness(&data);
    }
}
