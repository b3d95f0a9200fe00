//! The reservation state that APTPL keeps across power loss (SPC-4 §5.9.4), as a small
//! versioned text format: a header line, `generation`, one `registration` line per
//! initiator port, an optional `reservation` line, and `end`, which tells a whole file from
//! a cut one. The parser refuses anything else.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{
    check_port, Persistent, PrType, Registration, Reservations, StateError, REGISTRATIONS_MAX,
    STATE_BYTES_MAX,
};

/// The first line of saved reservation state: its format and version.
pub(crate) const STATE_HEADER: &str = "gw-scsi reservations v1";

impl Reservations {
    /// The state APTPL preserves, as text; `None` when nothing must be kept (APTPL off or
    /// no registrations), and the caller then removes what it saved before.
    pub(crate) fn snapshot(&self) -> Option<Vec<u8>> {
        if !self.aptpl || self.registrations.is_empty() {
            return None;
        }
        let mut s = String::new();
        let _ = writeln!(s, "{STATE_HEADER}");
        let _ = writeln!(s, "generation {}", self.generation);
        for (port, r) in &self.registrations {
            let _ = writeln!(
                s,
                "registration {:016x} {} {port}",
                r.key,
                u8::from(r.all_tg_pt)
            );
        }
        if let Some(pr) = &self.persistent {
            let _ = writeln!(
                s,
                "reservation {} {}",
                pr.kind.code(),
                pr.holder.as_deref().unwrap_or("-")
            );
        }
        s.push_str("end\n");
        Some(s.into_bytes())
    }

    /// Replaces the persistent state with one saved by [`Reservations::snapshot`]; an SPC-2
    /// reservation does not survive. Garbage is refused and the state left as it was.
    pub(crate) fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        if bytes.len() > STATE_BYTES_MAX {
            return Err(StateError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| StateError::NotText)?;
        let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        if lines.next().map(|(_, l)| l) != Some(STATE_HEADER) {
            return Err(StateError::Header);
        }
        let mut generation = None;
        let mut registrations = BTreeMap::new();
        let mut persistent = None;
        let mut ended = false;
        for (line, l) in lines.by_ref() {
            let bad = |reason| StateError::Line { line, reason };
            let mut words = l.split(' ');
            match words.next() {
                Some("generation") if generation.is_none() => {
                    let g = words.next().ok_or(bad("generation has no value"))?;
                    generation = Some(parse_decimal(g).ok_or(bad("bad generation"))?);
                }
                Some("registration") => {
                    let k = words.next().ok_or(bad("registration has no key"))?;
                    if k.len() != 16 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad("a key is 16 hex digits"));
                    }
                    let key = u64::from_str_radix(k, 16).map_err(|_| bad("bad key"))?;
                    if key == 0 {
                        return Err(bad("a registered key is never zero"));
                    }
                    let all_tg_pt = match words.next() {
                        Some("0") => false,
                        Some("1") => true,
                        _ => return Err(bad("ALL_TG_PT is 0 or 1")),
                    };
                    let port = words.next().ok_or(bad("registration has no port"))?;
                    check_port(port).map_err(bad)?;
                    if registrations.len() >= REGISTRATIONS_MAX {
                        return Err(bad("too many registrations"));
                    }
                    let r = Registration { key, all_tg_pt };
                    if registrations.insert(port.to_owned(), r).is_some() {
                        return Err(bad("port registered twice"));
                    }
                }
                Some("reservation") if persistent.is_none() => {
                    let t = words.next().ok_or(bad("reservation has no type"))?;
                    let kind = parse_decimal(t)
                        .and_then(|c| u8::try_from(c).ok())
                        .and_then(PrType::from_code)
                        .ok_or(bad("bad reservation type"))?;
                    let holder = words.next().ok_or(bad("reservation has no holder"))?;
                    let holder = match (kind.all_registrants(), holder) {
                        (true, "-") => None,
                        (false, h) if h != "-" => Some(h.to_owned()),
                        _ => return Err(bad("holder does not fit the reservation type")),
                    };
                    persistent = Some(Persistent { kind, holder });
                }
                Some("end") => {
                    ended = true;
                }
                _ => return Err(bad("unknown or repeated line")),
            }
            if words.next().is_some() {
                return Err(bad("trailing words"));
            }
            if ended {
                break;
            }
        }
        if !ended {
            return Err(StateError::Truncated);
        }
        // Only an empty line may follow: the newline after `end`.
        match (lines.next(), lines.next()) {
            (None, _) | (Some((_, "")), None) => {}
            (Some((line, _)), _) => {
                return Err(StateError::Line {
                    line,
                    reason: "text after `end`",
                })
            }
        }
        let generation = generation.ok_or(StateError::Inconsistent("no generation line"))?;
        if registrations.is_empty() {
            return Err(StateError::Inconsistent("no registrations"));
        }
        if let Some(Persistent {
            holder: Some(h), ..
        }) = &persistent
        {
            if !registrations.contains_key(h) {
                return Err(StateError::Inconsistent(
                    "the reservation holder is not registered",
                ));
            }
        }
        *self = Reservations {
            registrations,
            persistent,
            generation,
            aptpl: true,
            spc2: None,
        };
        Ok(())
    }
}

fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
