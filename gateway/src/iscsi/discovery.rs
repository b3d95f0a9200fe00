//! Text exchanges in full-feature phase, SendTargets above all (RFC 7143 §11.10–11,
//! Appendix C): the answer lists each visible target with every portal and its group tag, and
//! is split over several Text Responses when it is longer than the initiator accepts.

use std::net::SocketAddr;

use super::pdu::{Bhs, TextRequest, TextResponse};
use super::text::{self, TextError, TEXT_BYTES_MAX};

/// A target as discovery shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredTarget {
    /// Its name.
    pub name: String,
    /// Its portals, with their portal group tags.
    pub portals: Vec<(SocketAddr, u16)>,
}

/// The reserved target transfer tag.
const NO_TTT: u32 = 0xffff_ffff;

/// One connection's text exchange state.
#[derive(Debug)]
pub struct TextExchange {
    /// Request text received with the Continue bit.
    request: Vec<u8>,
    /// Response text not yet sent, and the TTT that asks for it.
    pending: Vec<u8>,
    ttt: u32,
    next_ttt: u32,
}

/// The SendTargets answer for `value` (`All`, a target name, or empty for the session's own).
pub fn send_targets(value: &str, targets: &[DiscoveredTarget], own: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for t in targets {
        let wanted = match value {
            "All" => true,
            "" => own.is_some_and(|o| o.eq_ignore_ascii_case(&t.name)),
            name => name.eq_ignore_ascii_case(&t.name),
        };
        if !wanted {
            continue;
        }
        text::push(&mut out, "TargetName", &t.name);
        for (addr, tpgt) in &t.portals {
            let a = match addr {
                SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
                SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
            };
            text::push(&mut out, "TargetAddress", &format!("{a},{tpgt}"));
        }
    }
    out
}

impl Default for TextExchange {
    fn default() -> Self {
        TextExchange::new()
    }
}

impl TextExchange {
    /// A fresh exchange state.
    pub fn new() -> TextExchange {
        TextExchange {
            request: Vec::new(),
            pending: Vec::new(),
            ttt: NO_TTT,
            next_ttt: 0,
        }
    }

    /// Handles one Text Request; returns the Text Response to send.
    #[allow(clippy::too_many_arguments)]
    pub fn on_request(
        &mut self,
        req: &TextRequest,
        data: &[u8],
        targets: &[DiscoveredTarget],
        max_xmit: u32,
        statsn: u32,
        exp_cmdsn: u32,
        max_cmdsn: u32,
    ) -> Result<(Bhs, Vec<u8>), TextError> {
        let reply = |final_: bool, continue_: bool, ttt: u32, data: Vec<u8>| {
            let bhs = TextResponse {
                final_,
                continue_,
                lun: req.lun,
                itt: req.itt,
                ttt,
                statsn,
                exp_cmdsn,
                max_cmdsn,
                data_segment_len: data.len() as u32,
            }
            .encode();
            (bhs, data)
        };
        if req.ttt != NO_TTT && req.ttt == self.ttt && !self.pending.is_empty() {
            // The initiator asks for the rest of a long response.
            return Ok(self.next_chunk(max_xmit, reply));
        }
        // A new request (a TTT of all ones resets any unfinished exchange).
        self.pending.clear();
        self.ttt = NO_TTT;
        if self.request.len() + data.len() > TEXT_BYTES_MAX {
            self.request.clear();
            return Err(TextError::TooLong);
        }
        self.request.extend_from_slice(data);
        if req.continue_ {
            return Ok(reply(false, false, self.allocate_ttt(), Vec::new()));
        }
        let pairs = text::parse(&std::mem::take(&mut self.request))?;
        let mut out = Vec::new();
        for (k, v) in &pairs {
            if k == "SendTargets" {
                let own = if targets.len() == 1 {
                    Some(targets[0].name.as_str())
                } else {
                    None
                };
                out.extend_from_slice(&send_targets(v, targets, own));
            } else {
                text::push(&mut out, k, "NotUnderstood");
            }
        }
        self.pending = out;
        Ok(self.next_chunk(max_xmit, reply))
    }

    fn allocate_ttt(&mut self) -> u32 {
        self.next_ttt = self.next_ttt.wrapping_add(1) % NO_TTT;
        self.ttt = self.next_ttt;
        self.ttt
    }

    fn next_chunk<F>(&mut self, max_xmit: u32, reply: F) -> (Bhs, Vec<u8>)
    where
        F: Fn(bool, bool, u32, Vec<u8>) -> (Bhs, Vec<u8>),
    {
        let max = max_xmit.max(512) as usize;
        if self.pending.len() <= max {
            self.ttt = NO_TTT;
            return reply(true, false, NO_TTT, std::mem::take(&mut self.pending));
        }
        let rest = self.pending.split_off(max);
        let chunk = std::mem::replace(&mut self.pending, rest);
        // One tag for the whole response (RFC 7143 §11.11.4).
        let ttt = if self.ttt == NO_TTT {
            self.allocate_ttt()
        } else {
            self.ttt
        };
        reply(false, true, ttt, chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ttt: u32, data_continue: bool) -> TextRequest {
        TextRequest {
            immediate: true,
            final_: !data_continue,
            continue_: data_continue,
            lun: [0; 8],
            itt: 3,
            ttt,
            cmdsn: 1,
            exp_statsn: 1,
        }
    }

    fn targets(n: usize) -> Vec<DiscoveredTarget> {
        (0..n)
            .map(|i| DiscoveredTarget {
                name: format!("iqn.2026-11.io.gateway:t{i}"),
                portals: vec![
                    ("127.0.0.1:3260".parse().unwrap(), 1),
                    ("[::1]:3260".parse().unwrap(), 1),
                ],
            })
            .collect()
    }

    #[test]
    fn send_targets_all_lists_every_portal() {
        let out = send_targets("All", &targets(2), None);
        let pairs = text::parse(&out).unwrap_or_default();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("TargetName=iqn.2026-11.io.gateway:t1\0"));
        assert!(text.contains("TargetAddress=127.0.0.1:3260,1\0"));
        assert!(text.contains("TargetAddress=[::1]:3260,1\0"));
        // Repeated keys are legal in a SendTargets answer, so a strict parse refuses them.
        assert!(pairs.is_empty());
    }

    #[test]
    fn long_answers_are_split_and_continued() {
        let mut x = TextExchange::new();
        let t = targets(40);
        let (bhs, first) = x
            .on_request(&req(NO_TTT, false), b"SendTargets=All\0", &t, 512, 1, 1, 1)
            .unwrap();
        assert_eq!(first.len(), 512);
        assert_eq!(bhs.0[1] & 0xc0, 0x40, "C set, F clear");
        let ttt = bhs.u32_at(20);
        assert_ne!(ttt, NO_TTT);
        let mut all = first;
        loop {
            let (bhs, chunk) = x
                .on_request(&req(ttt, false), b"", &t, 512, 1, 1, 1)
                .unwrap();
            all.extend_from_slice(&chunk);
            if bhs.0[1] & 0x80 != 0 {
                break;
            }
            assert_eq!(bhs.u32_at(20), ttt);
        }
        assert_eq!(all, send_targets("All", &t, None));
    }
}
