//! The simulated cluster: a Curve volume kept in a local file, answered from threads of its
//! own after a configurable delay, so completions arrive on foreign threads and, with
//! `reorder_us`, out of order. Errors and hangs are injected by request number or by byte
//! offset. It checks alignment as Curve does and answers a misaligned request at once, on the
//! caller's thread, as libcbd does.
//!
//! Submitting never blocks: requests go to the cluster threads over lock-free channels. Each
//! thread keeps its requests in a heap ordered by due time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::error::{code, IoError, OpenError};
use crate::options::{SimOptions, SIM_SIZE_BYTES_DEFAULT};
use crate::request::{Op, Pending, Request};
use crate::sink::CompletionSink;
use crate::spec::VolumeSpec;

/// Bytes of zeros written per step of a discard.
const DISCARD_CHUNK_BYTES: usize = 64 << 10;

/// A request waiting in a cluster thread.
#[derive(Debug)]
struct Job {
    due: Instant,
    seq: u64,
    offset: u64,
    len: usize,
    fail: bool,
    pending: Pending,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Where a job goes.
#[derive(Debug)]
enum Msg {
    Run(Job),
    Hang(Pending),
}

/// An open simulated volume.
#[derive(Debug)]
pub(crate) struct SimVolume {
    options: SimOptions,
    size_bytes: u64,
    seq: AtomicU64,
    threads: Vec<mpsc::Sender<Msg>>,
}

/// A well-mixed 64-bit hash (splitmix64), for reproducible delays.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl SimVolume {
    /// The file that holds `spec`'s data under `dir`.
    pub(crate) fn file_path(options: &SimOptions, spec: &VolumeSpec) -> PathBuf {
        let path = spec.path.trim_start_matches('/').replace('/', "%2F");
        options.dir.join(format!("{path}_{}_.img", spec.owner))
    }

    pub(crate) fn open(spec: &VolumeSpec, options: &SimOptions) -> Result<SimVolume, OpenError> {
        let path = Self::file_path(options, spec);
        let file_err = |source| OpenError::SimFile {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&options.dir).map_err(file_err)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(file_err)?;
        let mut size = file.metadata().map_err(file_err)?.len();
        let want = match (options.size_bytes, size) {
            (Some(s), _) => Some(s),
            (None, 0) => Some(SIM_SIZE_BYTES_DEFAULT),
            (None, _) => None,
        };
        if let Some(want) = want.filter(|&w| w > size) {
            file.set_len(want).map_err(file_err)?;
            size = want;
        }
        let block = u64::from(options.block_bytes);
        let file = Arc::new(file);
        let mut threads = Vec::with_capacity(options.threads);
        for i in 0..options.threads {
            let (tx, rx) = mpsc::channel();
            let file = file.clone();
            std::thread::Builder::new()
                .name(format!("curve-sim/{i}"))
                .spawn(move || cluster_thread(&file, rx))
                .map_err(OpenError::Thread)?;
            threads.push(tx);
        }
        Ok(SimVolume {
            options: options.clone(),
            size_bytes: size - size % block,
            seq: AtomicU64::new(0),
            threads,
        })
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub(crate) fn block_bytes(&self) -> u32 {
        self.options.block_bytes
    }

    pub(crate) fn submit(&self, req: Request, sink: &Arc<CompletionSink>) {
        let o = &self.options;
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let (offset, len, op) = (req.offset, req.len, req.op);
        let pending = Pending::new(req, sink);
        let block = u64::from(o.block_bytes);
        let ranged = matches!(op, Op::Read | Op::Write | Op::Discard);
        if ranged && len == 0 {
            return pending.complete(Ok(0));
        }
        if ranged && (!offset.is_multiple_of(block) || !(len as u64).is_multiple_of(block)) {
            // As libcbd: misaligned requests are answered at once, on the caller's thread.
            return pending.complete(Err(IoError::Curve {
                code: code::NOT_ALIGNED,
            }));
        }
        if ranged
            && offset
                .checked_add(len as u64)
                .is_none_or(|e| e > self.size_bytes)
        {
            return pending.complete(Err(IoError::Curve {
                code: code::PARAM_ERROR,
            }));
        }
        let covers = |at: Option<u64>| {
            matches!(op, Op::Read | Op::Write)
                && at.is_some_and(|b| b >= offset && b < offset + len as u64)
        };
        let thread = &self.threads[(seq % self.threads.len() as u64) as usize];
        if covers(o.hang_at) {
            // A closed cluster thread gives the message back; Pending's Drop answers it.
            let _ = thread.send(Msg::Hang(pending));
            return;
        }
        let fail = covers(o.error_at) || o.error_every.is_some_and(|n| seq.is_multiple_of(n));
        let jitter = if o.reorder_us > 0 {
            mix(o.seed ^ seq) % (o.reorder_us + 1)
        } else {
            0
        };
        let due = Instant::now() + Duration::from_micros(o.latency_us + jitter);
        let _ = thread.send(Msg::Run(Job {
            due,
            seq,
            offset,
            len,
            fail,
            pending,
        }));
    }
}

/// One cluster thread: runs its jobs when due; ends (answering what it holds) when the
/// volume is dropped.
fn cluster_thread(file: &File, rx: mpsc::Receiver<Msg>) {
    let mut heap: BinaryHeap<Reverse<Job>> = BinaryHeap::new();
    let mut hung: Vec<Pending> = Vec::new();
    loop {
        let msg = match heap.peek() {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(Reverse(j)) => rx.recv_timeout(j.due.saturating_duration_since(Instant::now())),
        };
        match msg {
            Ok(Msg::Run(job)) => heap.push(Reverse(job)),
            Ok(Msg::Hang(p)) => hung.push(p),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Closed: finish what was queued, as Curve's close waits for I/O in flight;
                // hung requests end with an error so their buffers come back.
                while let Some(Reverse(job)) = heap.pop() {
                    run(file, job);
                }
                for p in hung {
                    p.complete(Err(IoError::Closed));
                }
                return;
            }
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(j)| j.due <= now) {
            let Reverse(job) = heap.pop().expect("peeked");
            run(file, job);
        }
    }
}

fn os(e: std::io::Error) -> IoError {
    IoError::Os {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// Does one job against the file and answers it.
fn run(file: &File, mut job: Job) {
    if job.fail {
        return job.pending.complete(Err(IoError::Curve {
            code: code::DISK_FAIL,
        }));
    }
    let (offset, len) = (job.offset, job.len);
    let result = match job.pending.op() {
        Op::Read => match job.pending.buf_mut() {
            Some(b) if b.len() >= len => file
                .read_exact_at(&mut b.as_mut_slice()[..len], offset)
                .map(|()| len)
                .map_err(os),
            b => Err(IoError::BadBuffer {
                len,
                capacity: b.map_or(0, |b| b.len()),
            }),
        },
        Op::Write => match job.pending.buf_mut() {
            Some(b) if b.len() >= len => file
                .write_all_at(&b.as_slice()[..len], offset)
                .map(|()| len)
                .map_err(os),
            b => Err(IoError::BadBuffer {
                len,
                capacity: b.map_or(0, |b| b.len()),
            }),
        },
        Op::Discard => {
            let zeros = vec![0u8; DISCARD_CHUNK_BYTES.min(len)];
            let mut at = 0usize;
            let mut result = Ok(0);
            while at < len {
                let n = (len - at).min(zeros.len());
                if let Err(e) = file.write_all_at(&zeros[..n], offset + at as u64) {
                    result = Err(os(e));
                    break;
                }
                at += n;
            }
            result
        }
        Op::Flush => file.sync_data().map(|()| 0).map_err(os),
    };
    job.pending.complete(result);
}
