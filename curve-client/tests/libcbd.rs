//! The libcbd backend against the fake libcbd (tests/fake-libcbd), built here with `cc`:
//! the real dlopen, context layout and callback path, and exactly one completion per request
//! through every quirk the library has.

mod common;

use std::time::Duration;

use curve_client::{BackendOptions, IoError, Op, OpenError, Request, Volume, VolumeSpec};
use gw_uring::IoBuf;

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
fn every_request_is_answered_exactly_once_through_the_quirks() {
    let dir = common::temp_dir("libcbd");
    let lib = common::build_fake_libcbd(&dir);
    std::fs::File::create(dir.join("vol_test_"))
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let conf = dir.join("client.conf");
    std::fs::write(
        &conf,
        format!(
            "fake.dir={}\nfake.delay_us=500\nfake.error_at=262144\nfake.refuse_at=393216\n",
            dir.display()
        ),
    )
    .unwrap();
    let opts = BackendOptions::parse(&format!(
        "backend=libcbd;lib={};conf={}",
        lib.display(),
        conf.display()
    ))
    .unwrap();
    let spec = VolumeSpec::parse("cbd:pool//vol_test_").unwrap();
    let v = Volume::open(&spec, &opts).unwrap();
    assert_eq!(v.size_bytes(), 4 << 20);
    let sink = curve_client::CompletionSink::new().unwrap();

    // Plain writes then reads, completed on the library's threads in its own order.
    const N: u64 = 32;
    for i in 0..N {
        let mut b = IoBuf::new_unregistered(4096);
        b.as_mut_slice().fill(i as u8 + 1);
        v.submit(req(i, Op::Write, i * 4096, 4096, Some(b)), &sink);
    }
    let got = common::collect(&sink, N as usize, Duration::from_secs(30));
    assert!(got.iter().all(|c| c.result == Ok(4096)), "{got:?}");
    for i in 0..N {
        v.submit(
            req(
                i,
                Op::Read,
                i * 4096,
                4096,
                Some(IoBuf::new_unregistered(4096)),
            ),
            &sink,
        );
    }
    for c in common::collect(&sink, N as usize, Duration::from_secs(30)) {
        assert_eq!(c.result, Ok(4096));
        assert!(c
            .buf
            .unwrap()
            .as_slice()
            .iter()
            .all(|&x| x == c.token as u8 + 1));
    }

    // The quirks, each answered once.
    let b = |n| Some(IoBuf::new_unregistered(n));
    v.submit(req(100, Op::Read, 0, 0, b(0)), &sink); // zero length: no callback
    v.submit(req(101, Op::Read, 100, 512, b(512)), &sink); // misaligned: callback + error
    v.submit(req(102, Op::Discard, 0, 4096, None), &sink); // small: callback on this thread
    v.submit(req(103, Op::Discard, 1 << 20, 1 << 20, None), &sink); // large: foreign thread
    v.submit(req(104, Op::Read, 262144, 4096, b(4096)), &sink); // injected error
    v.submit(req(105, Op::Read, 393216, 4096, b(4096)), &sink); // refused, no callback
    v.submit(req(106, Op::Flush, 0, 0, None), &sink); // blocking sync on the helper thread
    v.submit(req(107, Op::Read, 0, 8192, b(4096)), &sink); // buffer too small
    let mut got = common::collect(&sink, 8, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = Vec::new();
    sink.drain(&mut extra);
    assert!(extra.is_empty(), "answered twice: {extra:?}");
    got.sort_by_key(|c| c.token);
    let results: Vec<_> = got.iter().map(|c| (c.token, c.result)).collect();
    assert_eq!(
        results,
        vec![
            (100, Ok(0)),
            (101, Err(IoError::Curve { code: 22 })),
            (102, Ok(0)),
            (103, Ok(0)),
            (104, Err(IoError::Curve { code: 20 })),
            (105, Err(IoError::Curve { code: 2 })),
            (106, Ok(0)),
            (
                107,
                Err(IoError::BadBuffer {
                    len: 8192,
                    capacity: 4096
                })
            ),
        ]
    );
    drop(v);
    // The library stays loaded and initialised: a second volume opens through it.
    let v = Volume::open(&spec, &opts).unwrap();
    drop(v);
}

#[test]
fn a_missing_library_names_what_to_install() {
    let opts = BackendOptions::parse("backend=libcbd;lib=/nonexistent/libcbd.so").unwrap();
    let e = Volume::open(&VolumeSpec::parse("cbd:pool//x_y_").unwrap(), &opts).unwrap_err();
    assert!(matches!(e, OpenError::Load { .. }));
    let text = e.to_string();
    assert!(
        text.contains("/nonexistent/libcbd.so") && text.contains("install"),
        "{text}"
    );
}
