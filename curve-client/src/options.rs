//! `bsopts` for `bs-type curve` LUNs: which backend serves the volume, and its settings.
//!
//! The string is `key=value` pairs separated by `;` (tgtadm's own parameter list is
//! comma-separated, so commas cannot appear). `backend` picks the backend:
//!
//! - `backend=libcbd` (the default): a real cluster. `lib=PATH` is the libcbd to load
//!   (default `libcbd.so` through the dynamic linker's path); `conf=PATH` the client
//!   configuration (default: the spec's `:<conf>` suffix, else `/etc/curve/client.conf`).
//! - `backend=sim`: the simulated cluster. `dir=PATH` (required) holds one file per volume;
//!   `size=BYTES` (K/M/G/T suffixes) creates or grows it (default 1G for a new file);
//!   `block=512|4096` is the volume's alignment (default 512); `latency_us=N` delays every
//!   completion; `reorder_us=N` adds a random 0..N µs on top, so completions come back out of
//!   order; `threads=N` cluster threads complete requests (default 2); `error_every=N` fails
//!   every Nth request; `error_at=BYTE` fails every read or write that covers that byte;
//!   `hang_at=BYTE` never completes them (until the volume is closed); `seed=N` seeds the
//!   randomness.

use std::path::PathBuf;

use crate::error::OpenError;

/// Longest latency the simulated cluster accepts, in microseconds (10 s).
pub const SIM_LATENCY_US_MAX: u64 = 10_000_000;
/// Most completion threads of one simulated volume.
pub const SIM_THREADS_MAX: usize = 16;
/// Size of a new simulated volume when `size=` is not given.
pub const SIM_SIZE_BYTES_DEFAULT: u64 = 1 << 30;
/// Longest `bsopts` string, in bytes.
pub const BSOPTS_BYTES_MAX: usize = 4096;

/// Settings of the simulated cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// Directory of the volume files.
    pub dir: PathBuf,
    /// Size to create or grow the volume to.
    pub size_bytes: Option<u64>,
    /// Alignment of offsets and lengths (512 or 4096).
    pub block_bytes: u32,
    /// Fixed delay before each completion.
    pub latency_us: u64,
    /// Upper bound of the random extra delay.
    pub reorder_us: u64,
    /// Completion threads.
    pub threads: usize,
    /// Fail every Nth request.
    pub error_every: Option<u64>,
    /// Fail reads and writes covering this byte.
    pub error_at: Option<u64>,
    /// Never complete reads and writes covering this byte.
    pub hang_at: Option<u64>,
    /// Seed of the delays.
    pub seed: u64,
}

/// Which backend serves a Curve LUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendOptions {
    /// Curve's libcbd, loaded at run time.
    Libcbd {
        /// The library to load.
        lib: PathBuf,
        /// The client configuration file, if given here.
        conf: Option<String>,
    },
    /// The simulated cluster.
    Sim(SimOptions),
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions::Libcbd {
            lib: PathBuf::from(crate::libcbd::LIB_DEFAULT),
            conf: None,
        }
    }
}

fn bad(message: String) -> OpenError {
    OpenError::Options(message)
}

/// Parses a byte count with an optional K/M/G/T suffix (powers of 1024).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        (i, 't' | 'T') => (&text[..i], 40),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

impl BackendOptions {
    /// Parses a `bsopts` string (see the module documentation).
    pub fn parse(text: &str) -> Result<BackendOptions, OpenError> {
        if text.len() > BSOPTS_BYTES_MAX {
            return Err(bad(format!("longer than {BSOPTS_BYTES_MAX} bytes")));
        }
        let text = text.trim().trim_matches('"');
        let mut pairs = Vec::new();
        for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("`{item}`: write key=value, separated by `;`")))?;
            pairs.push((k.trim(), v.trim()));
        }
        let backend = pairs
            .iter()
            .find(|(k, _)| *k == "backend")
            .map_or("libcbd", |(_, v)| v);
        match backend {
            "libcbd" => {
                let mut lib = PathBuf::from(crate::libcbd::LIB_DEFAULT);
                let mut conf = None;
                for (k, v) in pairs {
                    match k {
                        "backend" => {}
                        "lib" => lib = PathBuf::from(v),
                        "conf" => conf = Some(v.to_string()),
                        other => {
                            return Err(bad(format!(
                                "`{other}` is not a libcbd option; known: lib, conf"
                            )))
                        }
                    }
                }
                Ok(BackendOptions::Libcbd { lib, conf })
            }
            "sim" => Self::parse_sim(&pairs).map(BackendOptions::Sim),
            other => Err(bad(format!(
                "backend `{other}` is not known; use libcbd (a real cluster) or sim (simulated)"
            ))),
        }
    }

    fn parse_sim(pairs: &[(&str, &str)]) -> Result<SimOptions, OpenError> {
        let mut o = SimOptions {
            dir: PathBuf::new(),
            size_bytes: None,
            block_bytes: 512,
            latency_us: 0,
            reorder_us: 0,
            threads: 2,
            error_every: None,
            error_at: None,
            hang_at: None,
            seed: 1,
        };
        let number = |k: &str, v: &str| {
            parse_bytes(v).ok_or_else(|| bad(format!("{k}=`{v}`: write a number")))
        };
        let mut dir = None;
        for &(k, v) in pairs {
            match k {
                "backend" => {}
                "dir" => dir = Some(PathBuf::from(v)),
                "size" => o.size_bytes = Some(number(k, v)?),
                "block" => {
                    o.block_bytes = match v {
                        "512" => 512,
                        "4096" => 4096,
                        _ => return Err(bad(format!("block=`{v}`: write 512 or 4096"))),
                    }
                }
                "latency_us" | "reorder_us" => {
                    let n = number(k, v)?;
                    if n > SIM_LATENCY_US_MAX {
                        return Err(bad(format!("{k}={n}: at most {SIM_LATENCY_US_MAX}")));
                    }
                    if k == "latency_us" {
                        o.latency_us = n;
                    } else {
                        o.reorder_us = n;
                    }
                }
                "threads" => {
                    let n = number(k, v)? as usize;
                    if !(1..=SIM_THREADS_MAX).contains(&n) {
                        return Err(bad(format!("threads={n}: write 1 to {SIM_THREADS_MAX}")));
                    }
                    o.threads = n;
                }
                "error_every" => {
                    let n = number(k, v)?;
                    o.error_every = (n > 0).then_some(n);
                }
                "error_at" => o.error_at = Some(number(k, v)?),
                "hang_at" => o.hang_at = Some(number(k, v)?),
                "seed" => o.seed = number(k, v)?,
                other => {
                    return Err(bad(format!(
                        "`{other}` is not a sim option; known: dir, size, block, latency_us, reorder_us, threads, error_every, error_at, hang_at, seed"
                    )))
                }
            }
        }
        o.dir = dir.ok_or_else(|| {
            bad("backend=sim needs dir=PATH, the directory of the volume files".into())
        })?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_options() {
        let o = BackendOptions::parse(
            "\"backend=sim; dir=/tmp/v; size=64M; block=4096; latency_us=100; reorder_us=50; error_at=4096\"",
        )
        .unwrap();
        let BackendOptions::Sim(s) = o else {
            panic!("sim expected")
        };
        assert_eq!(s.dir, PathBuf::from("/tmp/v"));
        assert_eq!(s.size_bytes, Some(64 << 20));
        assert_eq!((s.block_bytes, s.latency_us, s.reorder_us), (4096, 100, 50));
        assert_eq!(s.error_at, Some(4096));
    }

    #[test]
    fn libcbd_is_the_default() {
        assert_eq!(
            BackendOptions::parse("").unwrap(),
            BackendOptions::default()
        );
        let o = BackendOptions::parse("lib=/opt/curve/libcbd.so;conf=/etc/c.conf").unwrap();
        assert_eq!(
            o,
            BackendOptions::Libcbd {
                lib: "/opt/curve/libcbd.so".into(),
                conf: Some("/etc/c.conf".into())
            }
        );
    }

    #[test]
    fn errors_name_the_fix() {
        for (text, hint) in [
            ("backend=nfs", "libcbd"),
            ("backend=sim", "dir=PATH"),
            ("backend=sim;dir=/x;block=1024", "512 or 4096"),
            ("backend=sim;dir=/x;threads=99", "1 to 16"),
            ("lib", "key=value"),
            ("backend=libcbd;dir=/x", "lib, conf"),
        ] {
            let e = BackendOptions::parse(text).unwrap_err().to_string();
            assert!(e.contains(hint), "{text}: {e}");
        }
    }
}
