//! The simulated cluster: data round-trips through its file, completions come from other
//! threads and out of order, injected errors fail only the requests they target, and a hung
//! request holds up nothing else.

mod common;

use std::time::Duration;

use curve_client::{BackendOptions, IoError, Op, Request, Volume, VolumeSpec};
use gw_uring::IoBuf;

fn open(tag: &str, extra: &str) -> Volume {
    let dir = common::temp_dir(tag);
    let opts = BackendOptions::parse(&format!(
        "backend=sim;dir={};size=8M;{extra}",
        dir.display()
    ))
    .unwrap();
    Volume::open(&VolumeSpec::parse("cbd:pool//vol_test_").unwrap(), &opts).unwrap()
}

fn filled(len: usize, seed: u8) -> IoBuf {
    let mut b = IoBuf::new_unregistered(len);
    for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
        *x = seed.wrapping_add(i as u8).wrapping_mul(31);
    }
    b
}

fn req(token: u64, op: Op, offset: u64, len: usize, buf: Option<IoBuf>) -> Request {
    Request {
        token,
        op,
        offset,
        len,
        buf,
    }
}

#[test]
fn writes_then_reads_come_back_reordered_and_intact() {
    let v = open(
        "reorder",
        "latency_us=50;reorder_us=2000;threads=4;block=4096",
    );
    assert_eq!(v.size_bytes(), 8 << 20);
    assert_eq!(v.align_bytes(), 4096);
    let sink = curve_client::CompletionSink::new().unwrap();
    const N: u64 = 64;
    for i in 0..N {
        v.submit(
            req(i, Op::Write, i * 8192, 8192, Some(filled(8192, i as u8))),
            &sink,
        );
    }
    let writes = common::collect(&sink, N as usize, Duration::from_secs(30));
    let order: Vec<u64> = writes.iter().map(|c| c.token).collect();
    assert!(writes.iter().all(|c| c.result == Ok(8192)));
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "completions in submission order: {order:?}"
    );
    for i in 0..N {
        v.submit(
            req(
                i,
                Op::Read,
                i * 8192,
                8192,
                Some(IoBuf::new_unregistered(8192)),
            ),
            &sink,
        );
    }
    for c in common::collect(&sink, N as usize, Duration::from_secs(30)) {
        assert_eq!(c.result, Ok(8192));
        let want = filled(8192, c.token as u8);
        assert_eq!(
            c.buf.unwrap().as_slice(),
            want.as_slice(),
            "token {}",
            c.token
        );
    }
}

#[test]
fn injected_error_fails_only_its_request_and_misalignment_is_refused() {
    let v = open("errors", "error_at=12288");
    let sink = curve_client::CompletionSink::new().unwrap();
    v.submit(
        req(1, Op::Read, 8192, 8192, Some(IoBuf::new_unregistered(8192))),
        &sink,
    );
    v.submit(
        req(2, Op::Read, 0, 8192, Some(IoBuf::new_unregistered(8192))),
        &sink,
    );
    v.submit(
        req(3, Op::Read, 100, 512, Some(IoBuf::new_unregistered(512))),
        &sink,
    );
    v.submit(
        req(4, Op::Read, 0, 0, Some(IoBuf::new_unregistered(0))),
        &sink,
    );
    v.submit(req(5, Op::Flush, 0, 0, None), &sink);
    v.submit(
        req(
            6,
            Op::Read,
            8 << 20,
            512,
            Some(IoBuf::new_unregistered(512)),
        ),
        &sink,
    );
    let mut got = common::collect(&sink, 6, Duration::from_secs(10));
    got.sort_by_key(|c| c.token);
    let results: Vec<_> = got.iter().map(|c| c.result).collect();
    assert_eq!(
        results,
        vec![
            Err(IoError::Curve { code: 20 }),
            Ok(8192),
            Err(IoError::Curve { code: 22 }),
            Ok(0),
            Ok(0),
            Err(IoError::Curve { code: 16 }),
        ]
    );
    assert_eq!(results[0].unwrap_err().errno(), libc::EIO);
    assert!(got.iter().all(|c| c.op == Op::Read || c.token == 5));
    assert!(got.iter().filter(|c| c.token != 5).all(|c| c.buf.is_some()));
}

#[test]
fn a_hung_request_blocks_nothing_else_and_is_answered_at_close() {
    let v = open("hang", "hang_at=0;threads=1");
    let sink = curve_client::CompletionSink::new().unwrap();
    v.submit(req(1, Op::Write, 0, 4096, Some(filled(4096, 1))), &sink);
    for i in 2..20 {
        v.submit(
            req(i, Op::Write, 4096 * i, 4096, Some(filled(4096, 1))),
            &sink,
        );
    }
    let got = common::collect(&sink, 18, Duration::from_secs(10));
    assert!(got.iter().all(|c| c.token != 1 && c.result == Ok(4096)));
    drop(v);
    let last = common::collect(&sink, 1, Duration::from_secs(10));
    assert_eq!((last[0].token, last[0].result), (1, Err(IoError::Closed)));
    assert!(last[0].buf.is_some(), "the buffer comes back");
}
