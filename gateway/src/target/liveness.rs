//! Connection liveness: when to ping a quiet initiator with a NOP-In, when to give up on it,
//! and when a PDU that stopped half way means the peer is gone.
//!
//! A target learns that an initiator has died only by asking: a dead host sends no FIN, and
//! its session would otherwise hold its slot, its tasks and its reservations for ever. So a
//! connection from which no whole PDU has come for `interval` seconds is pinged with a NOP-In
//! carrying a fresh Target Transfer Tag, which the initiator must answer with a NOP-Out
//! (RFC 7143 §11.19, §11.18). Any whole PDU from the initiator proves it alive again. After
//! `count` pings in a row go unanswered, the connection is closed one interval after the last.
//!
//! Only whole PDUs count as life: a peer that sends half a PDU and then dribbles or stalls is
//! pinged like a silent one (it cannot answer without first finishing its PDU). With pings off,
//! a PDU left unfinished for [`PDU_STALL_MAX`] still closes the connection.
//!
//! Everything here is plain state over [`Instant`]s given by the caller; the target thread
//! drives it from one periodic tick ([`TICK`]).

use std::time::{Duration, Instant};

/// How often a target thread looks at its connections' liveness.
pub const TICK: Duration = Duration::from_secs(1);

/// Longest NOP-In interval, in seconds.
pub const NOP_INTERVAL_SECS_MAX: u32 = 3600;

/// Most unanswered pings before a connection is closed.
pub const NOP_COUNT_MAX: u32 = 255;

/// How long a connection may sit with part of a PDU received and nothing more arriving,
/// when pings are off. A live initiator never pauses inside a PDU for this long.
pub const PDU_STALL_MAX: Duration = Duration::from_secs(60);

/// A target's ping policy, as tgt's `nop_interval` and `nop_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nop {
    /// Seconds of silence before a ping; 0 turns pings off.
    pub interval_secs: u32,
    /// Pings left unanswered before the connection is closed (1 and up when pings are on).
    pub count: u32,
}

/// Why a ping policy was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NopError {
    /// The interval is too long.
    #[error("nop_interval {0} is out of range: write 0 (off) to {NOP_INTERVAL_SECS_MAX} seconds")]
    Interval(u32),
    /// The count is zero or too large.
    #[error("nop_count {0} is out of range: write 1 to {NOP_COUNT_MAX}")]
    Count(u32),
}

impl Nop {
    /// No pings.
    pub const OFF: Nop = Nop {
        interval_secs: 0,
        count: 0,
    };

    /// What a target pings with unless told otherwise: a dead initiator is noticed within
    /// about two minutes, and a live one answers four small PDUs a minute when idle.
    pub const DEFAULT: Nop = Nop {
        interval_secs: 30,
        count: 3,
    };

    /// Checks the bounds: the interval at most [`NOP_INTERVAL_SECS_MAX`], the count 1 to
    /// [`NOP_COUNT_MAX`] (0 is allowed only with pings off).
    pub fn new(interval_secs: u32, count: u32) -> Result<Nop, NopError> {
        if interval_secs > NOP_INTERVAL_SECS_MAX {
            return Err(NopError::Interval(interval_secs));
        }
        if count > NOP_COUNT_MAX || (count == 0 && interval_secs != 0) {
            return Err(NopError::Count(count));
        }
        Ok(Nop {
            interval_secs,
            count,
        })
    }

    /// Whether pings are sent.
    pub fn is_on(&self) -> bool {
        self.interval_secs != 0
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval_secs))
    }
}

impl Default for Nop {
    fn default() -> Self {
        Nop::DEFAULT
    }
}

/// What a tick asks of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing.
    Nothing,
    /// Send a NOP-In ping.
    Ping,
    /// Close the connection: pings went unanswered.
    Unanswered,
    /// Close the connection: a PDU stopped half way.
    Stalled,
}

/// One connection's liveness.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// When the last whole PDU arrived (or the connection started).
    heard: Instant,
    /// When bytes last arrived.
    bytes: Instant,
    /// When the last ping was sent, if one was sent since `heard`.
    pinged: Option<Instant>,
    /// Pings sent since `heard`.
    unanswered: u32,
}

impl Liveness {
    /// A connection that has just been heard from.
    pub fn new(now: Instant) -> Liveness {
        Liveness {
            heard: now,
            bytes: now,
            pinged: None,
            unanswered: 0,
        }
    }

    /// Bytes arrived.
    pub fn on_bytes(&mut self, now: Instant) {
        self.bytes = now;
    }

    /// A whole PDU arrived: the initiator is alive.
    pub fn on_pdu(&mut self, now: Instant) {
        self.heard = now;
        self.bytes = now;
        self.pinged = None;
        self.unanswered = 0;
    }

    /// Pings sent and not answered yet.
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }

    /// Decides what is due at `now` under `nop`, with `partial` telling whether part of a
    /// PDU is buffered. Counts a ping as sent when it answers [`Due::Ping`].
    pub fn tick(&mut self, now: Instant, nop: Nop, partial: bool) -> Due {
        if !nop.is_on() {
            let stalled = partial && now.saturating_duration_since(self.bytes) >= PDU_STALL_MAX;
            return if stalled { Due::Stalled } else { Due::Nothing };
        }
        let since = self.pinged.unwrap_or(self.heard);
        if now.saturating_duration_since(since) < nop.interval() {
            return Due::Nothing;
        }
        if self.unanswered >= nop.count {
            return Due::Unanswered;
        }
        self.unanswered += 1;
        self.pinged = Some(now);
        Due::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn bounds_are_checked() {
        assert_eq!(Nop::new(0, 0), Ok(Nop::OFF));
        assert_eq!(Nop::new(5, 0), Err(NopError::Count(0)));
        assert_eq!(Nop::new(5, NOP_COUNT_MAX + 1), Err(NopError::Count(256)));
        assert_eq!(
            Nop::new(NOP_INTERVAL_SECS_MAX + 1, 3),
            Err(NopError::Interval(3601))
        );
        assert!(Nop::new(NOP_INTERVAL_SECS_MAX, NOP_COUNT_MAX).is_ok());
    }

    #[test]
    fn silent_peer_is_pinged_count_times_then_dropped() {
        let t0 = Instant::now();
        let nop = Nop::new(5, 2).unwrap();
        let mut l = Liveness::new(t0);
        assert_eq!(l.tick(t0 + secs(4), nop, false), Due::Nothing);
        assert_eq!(l.tick(t0 + secs(5), nop, false), Due::Ping);
        assert_eq!(l.tick(t0 + secs(9), nop, false), Due::Nothing);
        assert_eq!(l.tick(t0 + secs(10), nop, false), Due::Ping);
        assert_eq!(l.unanswered(), 2);
        assert_eq!(l.tick(t0 + secs(14), nop, false), Due::Nothing);
        assert_eq!(l.tick(t0 + secs(15), nop, false), Due::Unanswered);
    }

    #[test]
    fn any_whole_pdu_answers_the_pings() {
        let t0 = Instant::now();
        let nop = Nop::new(5, 2).unwrap();
        let mut l = Liveness::new(t0);
        assert_eq!(l.tick(t0 + secs(5), nop, false), Due::Ping);
        assert_eq!(l.tick(t0 + secs(10), nop, false), Due::Ping);
        l.on_pdu(t0 + secs(11));
        assert_eq!(l.unanswered(), 0);
        // Silence is measured from the PDU again.
        assert_eq!(l.tick(t0 + secs(15), nop, false), Due::Nothing);
        assert_eq!(l.tick(t0 + secs(16), nop, false), Due::Ping);
    }

    #[test]
    fn a_busy_peer_is_never_pinged() {
        let t0 = Instant::now();
        let nop = Nop::new(2, 1).unwrap();
        let mut l = Liveness::new(t0);
        for s in 1..100 {
            l.on_pdu(t0 + secs(s));
            assert_eq!(l.tick(t0 + secs(s) + secs(1), nop, false), Due::Nothing);
        }
    }

    #[test]
    fn bytes_without_a_whole_pdu_do_not_count_as_life() {
        let t0 = Instant::now();
        let nop = Nop::new(1, 1).unwrap();
        let mut l = Liveness::new(t0);
        l.on_bytes(t0 + secs(1));
        assert_eq!(l.tick(t0 + secs(1), nop, true), Due::Ping);
        l.on_bytes(t0 + secs(2));
        assert_eq!(l.tick(t0 + secs(2), nop, true), Due::Unanswered);
    }

    #[test]
    fn with_pings_off_only_a_stalled_pdu_is_dropped() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let late = t0 + PDU_STALL_MAX;
        assert_eq!(l.tick(late, Nop::OFF, false), Due::Nothing);
        assert_eq!(l.tick(late, Nop::OFF, true), Due::Stalled);
        l.on_bytes(late);
        assert_eq!(l.tick(late + secs(1), Nop::OFF, true), Due::Nothing);
    }

    #[test]
    fn shortening_the_interval_applies_at_once() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.tick(t0 + secs(3), Nop::DEFAULT, false), Due::Nothing);
        assert_eq!(
            l.tick(t0 + secs(3), Nop::new(1, 1).unwrap(), false),
            Due::Ping
        );
    }
}
