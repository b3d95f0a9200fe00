//! The ring against real sockets and files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use gw_uring::{mailbox, Completion, IoBuf, Ring, RingOptions, SendChain};

fn small_ring(recv_bufs: u16, recv_bytes: u32) -> Ring {
    Ring::new(&RingOptions {
        recv_buf_count: recv_bufs,
        recv_buf_bytes: recv_bytes,
        io_buf_count: 2,
        io_buf_bytes: 64 << 10,
        ..Default::default()
    })
    .expect("io_uring available")
}

fn turn(ring: &mut Ring, out: &mut Vec<Completion>) {
    ring.submit_and_wait(1).unwrap();
    ring.reap(out);
}

/// Turns the ring until at least one completion is out.
fn turn_until_one(ring: &mut Ring, out: &mut Vec<Completion>) {
    while out.is_empty() {
        turn(ring, out);
    }
}

#[test]
fn accept_several_clients() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut ring = small_ring(8, 4096);
    ring.accept_multi(listener.as_raw_fd(), 7).unwrap();
    let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut accepted = Vec::new();
    let mut out = Vec::new();
    while accepted.len() < clients.len() {
        turn(&mut ring, &mut out);
        for c in out.drain(..) {
            match c {
                Completion::Accepted { token: 7, result } => accepted.push(result.unwrap()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(accepted.len(), 5);
}

#[test]
fn receive_rearms_after_enobufs_and_keeps_order() {
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut ring = small_ring(2, 512);
    ring.recv_multi(b.as_raw_fd(), 1).unwrap();
    let total = 1 << 20;
    let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        a.write_all(&sent).unwrap();
    });
    let mut got = Vec::with_capacity(total);
    let mut out = Vec::new();
    let mut held = Vec::new();
    let mut eof = false;
    while !eof {
        turn(&mut ring, &mut out);
        for c in out.drain(..) {
            match c {
                Completion::Received {
                    result: Ok(Some(buf)),
                    ..
                } => {
                    assert!(!eof, "no data after the end of the stream");
                    got.extend_from_slice(ring.recv_data(&buf));
                    held.push(buf);
                }
                // The writer's end closes once everything is written.
                Completion::Received {
                    result: Ok(None), ..
                } => eof = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Hold buffers across a turn so the kernel runs out (ENOBUFS), then return them.
        for b in held.drain(..) {
            ring.recycle(b);
        }
    }
    writer.join().unwrap();
    assert!(got == data, "bytes arrive intact and in order");
}

#[test]
fn large_chain_survives_short_sends() {
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut ring = small_ring(8, 4096);
    let mut chain = SendChain::new();
    let mut expected = Vec::new();
    for i in 0..16u32 {
        let header = [i as u8; 48];
        chain.push_slice(&header);
        expected.extend_from_slice(&header);
        let mut buf = IoBuf::new_unregistered(1 << 20);
        for (j, x) in buf.as_mut_slice().iter_mut().enumerate() {
            *x = (j as u32 ^ i) as u8;
        }
        expected.extend_from_slice(buf.as_slice());
        let h = chain.attach_buf(buf);
        chain.push_buf_range(h, 0..1 << 20);
    }
    let total = chain.len_bytes();
    ring.send(a.as_raw_fd(), 9, chain).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 7919];
        while got.len() < total {
            let n = b.read(&mut chunk).unwrap();
            got.extend_from_slice(&chunk[..n]);
            if got.len() % 5 == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        got
    });
    let mut out = Vec::new();
    loop {
        turn(&mut ring, &mut out);
        if let Some(Completion::Sent {
            token,
            result,
            mut chain,
        }) = out.pop()
        {
            assert_eq!(token, 9);
            assert_eq!(result.unwrap(), total);
            assert_eq!(chain.clear().len(), 16, "buffers come back");
            break;
        }
    }
    assert!(reader.join().unwrap() == expected);
}

#[test]
fn file_round_trip_registered_and_plain() {
    let path = std::env::temp_dir().join(format!("gw-ring-{}.img", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(1 << 20).unwrap();
    let mut ring = small_ring(8, 4096);
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    for (i, size) in [(0u64, 4096usize), (1, 200 << 10)] {
        let mut buf = ring.alloc_buf(size);
        assert_eq!(buf.is_registered(), size <= 64 << 10);
        buf.as_mut_slice().fill(0x40 + i as u8);
        ring.write_at(fd, 1, buf, i * 300_000, size, i == 1)
            .unwrap();
        turn_until_one(&mut ring, &mut out);
        let Some(Completion::Written { result, buf, .. }) = out.pop() else {
            panic!()
        };
        assert_eq!(result.unwrap(), size);
        ring.free_buf(buf);
        let buf = ring.alloc_buf(size);
        ring.read_at(fd, 2, buf, i * 300_000, size).unwrap();
        turn_until_one(&mut ring, &mut out);
        let Some(Completion::Read { result, buf, .. }) = out.pop() else {
            panic!()
        };
        assert_eq!(result.unwrap(), size);
        assert!(buf.as_slice()[..size].iter().all(|&x| x == 0x40 + i as u8));
        ring.free_buf(buf);
    }
    // Reading past the end is short, not an error.
    let buf = ring.alloc_buf(8192);
    ring.read_at(fd, 3, buf, (1 << 20) - 100, 8192).unwrap();
    turn_until_one(&mut ring, &mut out);
    let Some(Completion::Read { result, .. }) = out.pop() else {
        panic!()
    };
    assert_eq!(result.unwrap(), 100);
    out.clear();
    ring.fdatasync(fd, 4).unwrap();
    turn_until_one(&mut ring, &mut out);
    assert!(matches!(
        out.pop(),
        Some(Completion::Synced {
            token: 4,
            result: Ok(())
        })
    ));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn mailbox_wakes_the_ring_from_another_thread() {
    let (tx, rx) = mailbox::<u32>().unwrap();
    let mut ring = small_ring(8, 4096);
    ring.watch_eventfd(rx.eventfd(), 5).unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..3 {
            tx.send(i).unwrap();
        }
    });
    let mut got = Vec::new();
    let mut out = Vec::new();
    while got.len() < 3 {
        turn(&mut ring, &mut out);
        for c in out.drain(..) {
            assert!(matches!(c, Completion::Signalled { token: 5 }));
            while let Some(m) = rx.try_recv() {
                got.push(m);
            }
        }
    }
    t.join().unwrap();
    assert_eq!(got, vec![0, 1, 2]);
}

#[test]
fn cancelled_receive_completes_once_and_frees_nothing_early() {
    let (_a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut ring = small_ring(8, 4096);
    let op = ring.recv_multi(b.as_raw_fd(), 3).unwrap();
    ring.submit_and_wait(0).unwrap();
    ring.cancel(op).unwrap();
    assert_eq!(
        ring.in_flight(),
        1,
        "the op stays owned until its last completion"
    );
    let mut out = Vec::new();
    while ring.in_flight() > 0 {
        turn(&mut ring, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert!(matches!(
        out[0],
        Completion::Received { token: 3, result: Err(e) } if e.raw() == libc::ECANCELED
    ));
}

#[test]
fn timer_fires() {
    let mut ring = small_ring(8, 4096);
    ring.timeout(Duration::from_millis(5), 11).unwrap();
    let mut out = Vec::new();
    turn(&mut ring, &mut out);
    assert!(matches!(out[..], [Completion::Timer { token: 11 }]));
}

#[test]
fn punched_hole_reads_zero_and_frees_blocks() {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileExt, MetadataExt};

    use gw_uring::{allocation_at, Fallocate};

    let path = std::env::temp_dir().join(format!("gw-punch-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mib = 1u64 << 20;
    file.write_all_at(&vec![0xa5u8; 4 * mib as usize], 0)
        .unwrap();
    file.sync_all().unwrap();
    let blocks_before = file.metadata().unwrap().blocks();
    assert!(
        allocation_at(file.as_fd(), mib)
            .unwrap()
            .is_none_or(|a| a.mapped),
        "written data is mapped"
    );

    let mut ring = small_ring(2, 4096);
    ring.fallocate(file.as_raw_fd(), 9, mib, 2 * mib, Fallocate::PunchHole)
        .unwrap();
    let mut out = Vec::new();
    turn_until_one(&mut ring, &mut out);
    match out.pop() {
        Some(Completion::Fallocated {
            token: 9,
            result: Ok(()),
        }) => {}
        other => panic!("unexpected {other:?}"),
    }

    let mut back = vec![0xffu8; 4 * mib as usize];
    file.read_exact_at(&mut back, 0).unwrap();
    let (m1, rest) = back.split_at(mib as usize);
    let (hole, m2) = rest.split_at(2 * mib as usize);
    assert!(m1.iter().all(|&b| b == 0xa5), "data before the hole kept");
    assert!(hole.iter().all(|&b| b == 0), "the hole reads as zeros");
    assert!(m2.iter().all(|&b| b == 0xa5), "data after the hole kept");
    let meta = file.metadata().unwrap();
    assert_eq!(meta.len(), 4 * mib, "KEEP_SIZE: the size stays");
    assert!(
        meta.blocks() <= blocks_before - (2 * mib / 512) + 8,
        "allocated 512-byte blocks {} -> {}: the hole freed its space",
        blocks_before,
        meta.blocks()
    );
    if let Some(a) = allocation_at(file.as_fd(), mib).unwrap() {
        assert_eq!(
            a,
            gw_uring::Allocation {
                mapped: false,
                end: 3 * mib
            }
        );
    }

    // ZERO_RANGE zeroes the tail and keeps its space.
    ring.fallocate(file.as_raw_fd(), 10, 3 * mib, mib, Fallocate::ZeroRange)
        .unwrap();
    out.clear();
    turn_until_one(&mut ring, &mut out);
    match out.pop() {
        Some(Completion::Fallocated { token: 10, result }) => {
            // tmpfs and a few others refuse ZERO_RANGE; ext4, XFS and btrfs do it.
            if result.is_ok() {
                let mut tail = vec![0xffu8; mib as usize];
                file.read_exact_at(&mut tail, 3 * mib).unwrap();
                assert!(tail.iter().all(|&b| b == 0));
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
}
