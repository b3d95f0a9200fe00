//! The completion sink under several producer threads: every completion is seen exactly
//! once, and the consumer, which drains only when the eventfd fires, never sleeps through
//! one.

mod common;

use std::time::Duration;

use curve_client::{Completion, CompletionSink, Op};

#[test]
fn no_completion_lost_or_doubled_under_concurrent_producers() {
    const PRODUCERS: u64 = 6;
    const EACH: u64 = 50_000;
    let sink = CompletionSink::new().unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    sink.push(Completion {
                        token: p * EACH + i,
                        op: Op::Write,
                        result: Ok(0),
                        buf: None,
                    });
                    if i % 1024 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let got = common::collect(&sink, (PRODUCERS * EACH) as usize, Duration::from_secs(60));
    for p in producers {
        p.join().unwrap();
    }
    let mut seen = vec![false; (PRODUCERS * EACH) as usize];
    for c in &got {
        assert!(!seen[c.token as usize], "token {} twice", c.token);
        seen[c.token as usize] = true;
    }
    assert!(seen.iter().all(|&s| s), "every token once");
    assert_eq!(got.len() as u64, PRODUCERS * EACH);
    // The armed flag coalesces wake-ups: far fewer eventfd writes than completions.
    assert!(sink.wakeups() < PRODUCERS * EACH, "{}", sink.wakeups());
    // Nothing left behind.
    let mut rest = Vec::new();
    sink.drain(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn a_completion_after_a_drain_wakes_the_consumer_again() {
    let sink = CompletionSink::new().unwrap();
    for round in 0..1000u64 {
        let s = sink.clone();
        let t = std::thread::spawn(move || {
            s.push(Completion {
                token: round,
                op: Op::Read,
                result: Ok(0),
                buf: None,
            })
        });
        let got = common::collect(&sink, 1, Duration::from_secs(10));
        assert_eq!(got[0].token, round);
        t.join().unwrap();
    }
}
