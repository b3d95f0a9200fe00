//! CHAP authentication of the security stage (RFC 7143 §12.1.3, RFC 1994), target side and
//! sans-IO.
//!
//! An [`Exchange`] is fed the `CHAP_*` keys of one Login Request at a time and answers with
//! the keys to send back. The flow it accepts is the RFC's:
//!
//! 1. the initiator offers `CHAP_A=<list>`; the target picks the first algorithm it supports
//!    and answers `CHAP_A`, `CHAP_I` (identifier) and `CHAP_C` (challenge);
//! 2. the initiator answers `CHAP_N` (user) and `CHAP_R` (response), and for mutual CHAP its
//!    own `CHAP_I` and `CHAP_C`; the target checks the response against its incoming
//!    accounts and, for mutual CHAP, answers with its outgoing account's `CHAP_N`/`CHAP_R`.
//!
//! The randomness (identifier and challenge) is handed in, so the machine is deterministic in
//! tests; [`Exchange::from_os_random`] draws it from the operating system.

use md5::Digest;
use subtle::ConstantTimeEq;

/// Bytes of the challenge the target sends.
pub const CHALLENGE_BYTES: usize = 32;
/// Shortest challenge accepted from an initiator (mutual CHAP), in bytes.
pub const CHALLENGE_BYTES_MIN: usize = 16;
/// Longest binary value (CHAP_C, CHAP_R) accepted, in bytes (RFC 7143 §12.1.3).
pub const BINARY_BYTES_MAX: usize = 1024;
/// Longest CHAP_N accepted, in bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// Most entries of a CHAP_A list looked at.
pub const ALGORITHMS_MAX: usize = 16;
/// Shortest secret a configuration may hold, in characters (what Windows initiators demand
/// at least; shorter secrets are open to offline guessing from one captured exchange).
pub const SECRET_CHARS_MIN: usize = 12;
/// Longest secret a configuration may hold, in characters.
pub const SECRET_CHARS_MAX: usize = 255;
/// Longest user name a configuration may hold, in bytes (what CHAP_N may carry).
pub const USER_BYTES_MAX: usize = NAME_BYTES_MAX;

/// A CHAP hash function, by its CHAP_A number (RFC 7143 §12.1.3, RFC 7143's IANA registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// 5: MD5, the one every initiator must offer.
    Md5,
    /// 6: SHA-1.
    Sha1,
    /// 7: SHA-256.
    Sha256,
    /// 8: SHA3-256.
    Sha3_256,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Md5,
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Sha3_256,
    ];

    /// The CHAP_A number.
    pub fn code(self) -> u32 {
        match self {
            Algorithm::Md5 => 5,
            Algorithm::Sha1 => 6,
            Algorithm::Sha256 => 7,
            Algorithm::Sha3_256 => 8,
        }
    }

    /// The algorithm numbered `code`, if supported.
    pub fn from_code(code: u32) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.code() == code)
    }

    /// Length of a response, in bytes.
    pub fn response_bytes(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 | Algorithm::Sha3_256 => 32,
        }
    }

    /// The CHAP response: H(identifier || secret || challenge) (RFC 1994 §4.1).
    pub fn response(self, identifier: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn hash<D: Digest>(identifier: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([identifier]);
            d.update(secret);
            d.update(challenge);
            d.finalize().to_vec()
        }
        match self {
            Algorithm::Md5 => hash::<md5::Md5>(identifier, secret, challenge),
            Algorithm::Sha1 => hash::<sha1::Sha1>(identifier, secret, challenge),
            Algorithm::Sha256 => hash::<sha2::Sha256>(identifier, secret, challenge),
            Algorithm::Sha3_256 => hash::<sha3::Sha3_256>(identifier, secret, challenge),
        }
    }
}

/// A CHAP user and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The CHAP_N it is known by.
    pub user: String,
    /// The shared secret.
    pub secret: String,
}

impl std::fmt::Debug for Account {
    /// Never prints the secret: accounts end up in logs through `{:?}` of larger structures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The accounts a target (or discovery) authenticates with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    /// Initiators that may log in; empty: no authentication is required.
    pub incoming: Vec<Account>,
    /// What the target answers with when an initiator asks it to authenticate itself (mutual
    /// CHAP); None: mutual CHAP is refused.
    pub outgoing: Option<Account>,
}

impl Accounts {
    /// Whether initiators must authenticate with CHAP.
    pub fn required(&self) -> bool {
        !self.incoming.is_empty()
    }
}

/// Why a CHAP exchange failed. Every case ends the login with "Authentication failure"
/// except [`ChapError::Random`], which is the target's fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChapError {
    /// The initiator offered no algorithm this target supports.
    #[error("CHAP_A={offered}: none of 5 (MD5), 6 (SHA-1), 7 (SHA-256), 8 (SHA3-256) offered")]
    NoCommonAlgorithm {
        /// What was offered.
        offered: String,
    },
    /// A key the step needs is missing.
    #[error("{0} is missing")]
    MissingKey(&'static str),
    /// A key came at the wrong step.
    #[error("{0} was not expected at this step of CHAP")]
    UnexpectedKey(&'static str),
    /// A value is malformed or out of bounds.
    #[error("{key}: {why}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// No incoming account of that name.
    #[error("no incoming account {user:?}")]
    UnknownUser {
        /// The CHAP_N sent.
        user: String,
    },
    /// The response does not match the account's secret.
    #[error("wrong CHAP response for {user:?}")]
    WrongResponse {
        /// The CHAP_N sent.
        user: String,
    },
    /// The initiator's challenge is too short or too long.
    #[error("initiator challenge of {len} bytes; {CHALLENGE_BYTES_MIN} to {BINARY_BYTES_MAX} are accepted")]
    ChallengeLength {
        /// Its length in bytes.
        len: usize,
    },
    /// The initiator sent back the target's own challenge (a reflection attack).
    #[error("the initiator's challenge is the target's own")]
    Reflected,
    /// Mutual CHAP was asked for but no outgoing account is configured.
    #[error("mutual CHAP asked for, but no outgoinguser is configured")]
    NoOutgoingAccount,
    /// The operating system gave no random bytes.
    #[error("no random bytes for a CHAP challenge: {0}")]
    Random(String),
}

/// The CHAP keys of one Login Request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChapKeys {
    /// CHAP_A: the algorithms offered.
    pub a: Option<String>,
    /// CHAP_I: the initiator's identifier (mutual CHAP).
    pub i: Option<String>,
    /// CHAP_C: the initiator's challenge (mutual CHAP).
    pub c: Option<String>,
    /// CHAP_N: the user name.
    pub n: Option<String>,
    /// CHAP_R: the response.
    pub r: Option<String>,
}

impl ChapKeys {
    /// Takes `key=value` if it is a CHAP key; false for any other key.
    pub fn take(&mut self, key: &str, value: &str) -> Result<bool, ChapError> {
        let slot = match key {
            "CHAP_A" => &mut self.a,
            "CHAP_I" => &mut self.i,
            "CHAP_C" => &mut self.c,
            "CHAP_N" => &mut self.n,
            "CHAP_R" => &mut self.r,
            _ if key.starts_with("CHAP_") => {
                return Err(ChapError::BadValue {
                    key: "CHAP_*",
                    why: "unknown CHAP key",
                })
            }
            _ => return Ok(false),
        };
        *slot = Some(value.to_string());
        Ok(true)
    }

    /// Whether no CHAP key was sent.
    pub fn is_empty(&self) -> bool {
        self == &ChapKeys::default()
    }
}

/// What a step of the exchange produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Send these keys; the exchange goes on.
    Challenge(Vec<(&'static str, String)>),
    /// The initiator is authenticated; send these keys (the target's own CHAP_N and CHAP_R
    /// for mutual CHAP, else none).
    Authenticated {
        /// The incoming account it proved.
        user: String,
        /// Keys to send.
        reply: Vec<(&'static str, String)>,
    },
}

#[derive(Debug)]
enum State {
    AwaitAlgorithm,
    AwaitResponse { algorithm: Algorithm },
    Done,
}

/// One CHAP exchange, target side.
#[derive(Debug)]
pub struct Exchange {
    state: State,
    identifier: u8,
    challenge: [u8; CHALLENGE_BYTES],
}

impl Exchange {
    /// An exchange that will challenge with `identifier` and `challenge`.
    pub fn new(identifier: u8, challenge: [u8; CHALLENGE_BYTES]) -> Exchange {
        Exchange {
            state: State::AwaitAlgorithm,
            identifier,
            challenge,
        }
    }

    /// An exchange with an identifier and challenge from the operating system's generator.
    pub fn from_os_random() -> Result<Exchange, ChapError> {
        let mut bytes = [0u8; CHALLENGE_BYTES + 1];
        getrandom::fill(&mut bytes).map_err(|e| ChapError::Random(e.to_string()))?;
        let mut challenge = [0u8; CHALLENGE_BYTES];
        challenge.copy_from_slice(&bytes[1..]);
        Ok(Exchange::new(bytes[0], challenge))
    }

    /// Whether the initiator has been authenticated.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes the CHAP keys of one request and answers them.
    pub fn step(&mut self, keys: &ChapKeys, accounts: &Accounts) -> Result<Progress, ChapError> {
        match self.state {
            State::AwaitAlgorithm => {
                for (present, name) in [
                    (keys.n.is_some(), "CHAP_N"),
                    (keys.r.is_some(), "CHAP_R"),
                    (keys.i.is_some(), "CHAP_I"),
                    (keys.c.is_some(), "CHAP_C"),
                ] {
                    if present {
                        return Err(ChapError::UnexpectedKey(name));
                    }
                }
                let offered = keys.a.as_deref().ok_or(ChapError::MissingKey("CHAP_A"))?;
                let algorithm = choose_algorithm(offered)?;
                self.state = State::AwaitResponse { algorithm };
                Ok(Progress::Challenge(vec![
                    ("CHAP_A", algorithm.code().to_string()),
                    ("CHAP_I", self.identifier.to_string()),
                    ("CHAP_C", encode_hex(&self.challenge)),
                ]))
            }
            State::AwaitResponse { algorithm } => {
                if keys.a.is_some() {
                    return Err(ChapError::UnexpectedKey("CHAP_A"));
                }
                let user = keys.n.as_deref().ok_or(ChapError::MissingKey("CHAP_N"))?;
                let response = keys.r.as_deref().ok_or(ChapError::MissingKey("CHAP_R"))?;
                if user.len() > NAME_BYTES_MAX {
                    return Err(ChapError::BadValue {
                        key: "CHAP_N",
                        why: "longer than 255 bytes",
                    });
                }
                // Check the mutual part's form first: a malformed request fails the same way
                // whether or not the secret is right.
                let mutual = match (&keys.i, &keys.c) {
                    (None, None) => None,
                    (Some(_), None) => return Err(ChapError::MissingKey("CHAP_C")),
                    (None, Some(_)) => return Err(ChapError::MissingKey("CHAP_I")),
                    (Some(i), Some(c)) => {
                        let identifier = parse_identifier(i)?;
                        let challenge = decode_binary("CHAP_C", c)?;
                        if !(CHALLENGE_BYTES_MIN..=BINARY_BYTES_MAX).contains(&challenge.len()) {
                            return Err(ChapError::ChallengeLength {
                                len: challenge.len(),
                            });
                        }
                        if challenge == self.challenge {
                            return Err(ChapError::Reflected);
                        }
                        Some((identifier, challenge))
                    }
                };
                let response = decode_binary("CHAP_R", response)?;
                let account = accounts
                    .incoming
                    .iter()
                    .find(|a| a.user == user)
                    .ok_or_else(|| ChapError::UnknownUser { user: user.into() })?;
                let expected =
                    algorithm.response(self.identifier, account.secret.as_bytes(), &self.challenge);
                // Lengths are public (they follow from the algorithm); the bytes are compared
                // in constant time.
                if expected.len() != response.len() || !bool::from(expected.ct_eq(&response)) {
                    return Err(ChapError::WrongResponse { user: user.into() });
                }
                let mut reply = Vec::new();
                if let Some((identifier, challenge)) = mutual {
                    let outgoing = accounts
                        .outgoing
                        .as_ref()
                        .ok_or(ChapError::NoOutgoingAccount)?;
                    let answer =
                        algorithm.response(identifier, outgoing.secret.as_bytes(), &challenge);
                    reply.push(("CHAP_N", outgoing.user.clone()));
                    reply.push(("CHAP_R", encode_hex(&answer)));
                }
                self.state = State::Done;
                Ok(Progress::Authenticated {
                    user: user.into(),
                    reply,
                })
            }
            State::Done => Err(ChapError::UnexpectedKey("CHAP_* after authentication")),
        }
    }
}

/// The first algorithm of the initiator's list that this target supports.
fn choose_algorithm(offered: &str) -> Result<Algorithm, ChapError> {
    let entries: Vec<&str> = offered.split(',').take(ALGORITHMS_MAX + 1).collect();
    if entries.len() > ALGORITHMS_MAX {
        return Err(ChapError::BadValue {
            key: "CHAP_A",
            why: "more than 16 algorithms offered",
        });
    }
    entries
        .iter()
        .filter_map(|e| parse_number(e.trim()))
        .find_map(Algorithm::from_code)
        .ok_or_else(|| ChapError::NoCommonAlgorithm {
            offered: offered.chars().take(64).collect(),
        })
}

/// A numeric value: decimal, or hex with `0x` (RFC 7143 §6.1).
fn parse_number(text: &str) -> Option<u32> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex)
            if !hex.is_empty() && hex.len() <= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            u32::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !text.is_empty()
            && text.len() <= 10
            && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse().ok()
        }
        None => None,
    }
}

fn parse_identifier(text: &str) -> Result<u8, ChapError> {
    parse_number(text)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(ChapError::BadValue {
            key: "CHAP_I",
            why: "not a number from 0 to 255",
        })
}

/// `0x` followed by lower-case hex digits.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Decodes a binary value (RFC 7143 §6.1): `0x`/`0X` hex (an odd digit count implies a
/// leading zero) or `0b`/`0B` base64, at most [`BINARY_BYTES_MAX`] bytes once decoded.
pub fn decode_binary(key: &'static str, text: &str) -> Result<Vec<u8>, ChapError> {
    let bad = |why| ChapError::BadValue { key, why };
    // Values come off the wire and may hold any character: split on a char boundary only.
    let (prefix, body) = match (text.get(..2), text.get(2..)) {
        (Some(prefix), Some(body)) => (prefix, body),
        _ => return Err(bad("neither 0x (hex) nor 0b (base64) encoded")),
    };
    let bytes = match prefix {
        "0x" | "0X" => {
            if body.len() > 2 * BINARY_BYTES_MAX {
                return Err(bad("longer than 1024 bytes"));
            }
            decode_hex(body).ok_or(bad("not hexadecimal"))?
        }
        "0b" | "0B" => {
            if body.len() > BINARY_BYTES_MAX.div_ceil(3) * 4 {
                return Err(bad("longer than 1024 bytes"));
            }
            decode_base64(body).ok_or(bad("not base64"))?
        }
        _ => return Err(bad("neither 0x (hex) nor 0b (base64) encoded")),
    };
    if bytes.is_empty() || bytes.len() > BINARY_BYTES_MAX {
        return Err(bad("empty or longer than 1024 bytes"));
    }
    Ok(bytes)
}

fn decode_hex(digits: &str) -> Option<Vec<u8>> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let digits = digits.as_bytes();
    let mut out = Vec::with_capacity(digits.len().div_ceil(2));
    let (head, rest) = digits.split_at(digits.len() % 2);
    if let Some(&d) = head.first() {
        out.push(nibble(d)?);
    }
    for pair in rest.chunks_exact(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

/// Standard-alphabet base64 (RFC 4648 §4); the `=` padding may be left out.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || (text.len() != body.len() && !text.len().is_multiple_of(4)) {
        return None;
    }
    let body = body.as_bytes();
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            acc |= u32::from(sextet(c)?) << (18 - 6 * k);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "secret-of-12chars";

    fn accounts(outgoing: bool) -> Accounts {
        Accounts {
            incoming: vec![
                Account {
                    user: "other".into(),
                    secret: "another-secret".into(),
                },
                Account {
                    user: "alice".into(),
                    secret: SECRET.into(),
                },
            ],
            outgoing: outgoing.then(|| Account {
                user: "target".into(),
                secret: "target-secret-1".into(),
            }),
        }
    }

    fn challenge() -> [u8; CHALLENGE_BYTES] {
        std::array::from_fn(|i| i as u8)
    }

    fn keys(pairs: &[(&str, &str)]) -> ChapKeys {
        let mut k = ChapKeys::default();
        for (key, value) in pairs {
            assert!(k.take(key, value).unwrap());
        }
        k
    }

    /// Runs step 1 and returns the exchange with the chosen algorithm and the sent keys.
    fn started(offer: &str) -> (Exchange, Vec<(&'static str, String)>) {
        let mut x = Exchange::new(42, challenge());
        let Progress::Challenge(sent) = x
            .step(&keys(&[("CHAP_A", offer)]), &accounts(true))
            .unwrap()
        else {
            panic!("step 1 challenges");
        };
        (x, sent)
    }

    #[test]
    fn known_answers() {
        // H(0x2a || "secret-of-12chars" || 00..0f), computed with an independent
        // implementation (Python's hashlib).
        let c: Vec<u8> = (0..16).collect();
        let s = SECRET.as_bytes();
        let cases = [
            (Algorithm::Md5, "0xdfafdf1758d83bf9fb9d2a9a289f355e"),
            (
                Algorithm::Sha1,
                "0xc7a37ea25146699b379c7a145f1a45f6d78dec87",
            ),
            (
                Algorithm::Sha256,
                "0x086916fce845becf5b2050234ea4da225e5c781e08ee846f13d0ea01e7892dff",
            ),
            (
                Algorithm::Sha3_256,
                "0x6d7053db44efe053d5d2918287d52f4f9823c47897e691e3e0c752315a3dbd5e",
            ),
        ];
        for (a, want) in cases {
            let r = a.response(0x2a, s, &c);
            assert_eq!(r.len(), a.response_bytes());
            assert_eq!(encode_hex(&r), want, "{a:?}");
        }
    }

    #[test]
    fn binary_encodings() {
        let sixteen: Vec<u8> = (0..16).collect();
        assert_eq!(
            decode_binary("K", "0b AAECAwQFBgcICQoLDA0ODw==".replace(' ', "").as_str()),
            Ok(sixteen.clone())
        );
        assert_eq!(
            decode_binary("K", "0BAAECAwQFBgcICQoLDA0ODw"),
            Ok(sixteen.clone())
        );
        assert_eq!(
            decode_binary("K", "0b//79AAE="),
            Ok(vec![0xff, 0xfe, 0xfd, 0, 1])
        );
        assert_eq!(decode_binary("K", &encode_hex(&sixteen)), Ok(sixteen));
        assert_eq!(decode_binary("K", "0XaBc"), Ok(vec![0x0a, 0xbc]));
        for bad in [
            "", "0x", "abcd", "0xzz", "0b!!!!", "0bA", "0bAA===", "0bA=AA",
        ] {
            assert!(decode_binary("K", bad).is_err(), "{bad:?}");
        }
        let long = format!("0x{}", "00".repeat(BINARY_BYTES_MAX + 1));
        assert!(decode_binary("K", &long).is_err());
        let max = format!("0x{}", "00".repeat(BINARY_BYTES_MAX));
        assert_eq!(decode_binary("K", &max).unwrap().len(), BINARY_BYTES_MAX);
    }

    #[test]
    fn picks_the_first_supported_algorithm() {
        let (_, sent) = started("7,5");
        assert_eq!(sent[0], ("CHAP_A", "7".into()));
        assert_eq!(sent[1], ("CHAP_I", "42".into()));
        assert_eq!(sent[2], ("CHAP_C", encode_hex(&challenge())));
        let (_, sent) = started("1,99,0x6,5");
        assert_eq!(sent[0], ("CHAP_A", "6".into()));
        let mut x = Exchange::new(1, challenge());
        assert!(matches!(
            x.step(&keys(&[("CHAP_A", "1,2,junk")]), &accounts(false)),
            Err(ChapError::NoCommonAlgorithm { .. })
        ));
        let many = vec!["5"; ALGORITHMS_MAX + 1].join(",");
        assert!(Exchange::new(1, challenge())
            .step(&keys(&[("CHAP_A", &many)]), &accounts(false))
            .is_err());
        assert_eq!(
            Exchange::new(1, challenge()).step(&ChapKeys::default(), &accounts(false)),
            Err(ChapError::MissingKey("CHAP_A"))
        );
        assert_eq!(
            Exchange::new(1, challenge()).step(
                &keys(&[("CHAP_A", "5"), ("CHAP_N", "alice")]),
                &accounts(false)
            ),
            Err(ChapError::UnexpectedKey("CHAP_N"))
        );
    }

    #[test]
    fn one_way_for_every_algorithm() {
        for a in Algorithm::ALL {
            let (mut x, _) = started(&a.code().to_string());
            let r = encode_hex(&a.response(42, SECRET.as_bytes(), &challenge()));
            let got = x
                .step(
                    &keys(&[("CHAP_N", "alice"), ("CHAP_R", &r)]),
                    &accounts(false),
                )
                .unwrap();
            assert_eq!(
                got,
                Progress::Authenticated {
                    user: "alice".into(),
                    reply: vec![]
                }
            );
            assert!(x.is_done());
            assert!(x.step(&keys(&[("CHAP_A", "5")]), &accounts(false)).is_err());
        }
    }

    #[test]
    fn refusals() {
        let md5 = |secret: &str| {
            encode_hex(&Algorithm::Md5.response(42, secret.as_bytes(), &challenge()))
        };
        let right = md5(SECRET);
        let cases: Vec<(Vec<(&str, String)>, ChapError)> = vec![
            (
                vec![
                    ("CHAP_N", "alice".into()),
                    ("CHAP_R", md5("wrong-secret-x")),
                ],
                ChapError::WrongResponse {
                    user: "alice".into(),
                },
            ),
            (
                vec![("CHAP_N", "mallory".into()), ("CHAP_R", right.clone())],
                ChapError::UnknownUser {
                    user: "mallory".into(),
                },
            ),
            (
                // The response of another account's secret does not pass for alice.
                vec![
                    ("CHAP_N", "alice".into()),
                    ("CHAP_R", md5("another-secret")),
                ],
                ChapError::WrongResponse {
                    user: "alice".into(),
                },
            ),
            (
                vec![("CHAP_N", "alice".into()), ("CHAP_R", right[..20].into())],
                ChapError::WrongResponse {
                    user: "alice".into(),
                },
            ),
            (
                vec![("CHAP_N", "alice".into())],
                ChapError::MissingKey("CHAP_R"),
            ),
            (
                vec![("CHAP_R", right.clone())],
                ChapError::MissingKey("CHAP_N"),
            ),
            (
                vec![
                    ("CHAP_N", "alice".into()),
                    ("CHAP_R", right.clone()),
                    ("CHAP_I", "1".into()),
                ],
                ChapError::MissingKey("CHAP_C"),
            ),
            (
                vec![
                    ("CHAP_N", "alice".into()),
                    ("CHAP_R", right.clone()),
                    ("CHAP_I", "1".into()),
                    ("CHAP_C", encode_hex(&challenge())),
                ],
                ChapError::Reflected,
            ),
            (
                vec![
                    ("CHAP_N", "alice".into()),
                    ("CHAP_R", right.clone()),
                    ("CHAP_I", "1".into()),
                    ("CHAP_C", encode_hex(&[7; CHALLENGE_BYTES_MIN - 1])),
                ],
                ChapError::ChallengeLength {
                    len: CHALLENGE_BYTES_MIN - 1,
                },
            ),
            (
                vec![
                    ("CHAP_N", "alice".into()),
                    ("CHAP_R", right.clone()),
                    ("CHAP_I", "256".into()),
                    ("CHAP_C", encode_hex(&[7; CHALLENGE_BYTES_MIN])),
                ],
                ChapError::BadValue {
                    key: "CHAP_I",
                    why: "not a number from 0 to 255",
                },
            ),
            (
                vec![
                    ("CHAP_N", "alice".into()),
                    ("CHAP_R", right.clone()),
                    ("CHAP_A", "5".into()),
                ],
                ChapError::UnexpectedKey("CHAP_A"),
            ),
        ];
        for (pairs, want) in cases {
            let (mut x, _) = started("5");
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(
                x.step(&keys(&pairs), &accounts(true)),
                Err(want),
                "{pairs:?}"
            );
            assert!(!x.is_done());
        }
    }

    #[test]
    fn mutual() {
        let theirs = [0x5a; 20];
        let r = encode_hex(&Algorithm::Sha256.response(42, SECRET.as_bytes(), &challenge()));
        let request = keys(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &r),
            ("CHAP_I", "0x07"),
            ("CHAP_C", &encode_hex(&theirs)),
        ]);
        let (mut x, _) = started("7");
        let Progress::Authenticated { user, reply } = x.step(&request, &accounts(true)).unwrap()
        else {
            panic!("authenticated");
        };
        assert_eq!(user, "alice");
        let want = Algorithm::Sha256.response(7, b"target-secret-1", &theirs);
        assert_eq!(
            reply,
            vec![("CHAP_N", "target".into()), ("CHAP_R", encode_hex(&want))]
        );
        let (mut x, _) = started("7");
        assert_eq!(
            x.step(&request, &accounts(false)),
            Err(ChapError::NoOutgoingAccount)
        );
    }

    /// Hostile values never panic: multi-byte characters at every position, odd lengths, and
    /// pseudo-random bytes through every key of both steps.
    #[test]
    fn hostile_values_are_refused_not_panicked_on() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "0xXbB=+/aZ9,é€\u{0}- ".chars().collect();
        for round in 0..4000 {
            let len = (next() % 40) as usize;
            let value: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = decode_binary("K", &value);
            let _ = parse_number(&value);
            let _ = choose_algorithm(&value);
            let (mut x, _) = started("5");
            let key = ["CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"][round % 4];
            let mut k = keys(&[("CHAP_N", "alice"), ("CHAP_R", "0x00")]);
            k.take(key, &value).unwrap();
            assert!(x.step(&k, &accounts(true)).is_err(), "{key}={value:?}");
        }
        assert!(decode_binary("K", "0é").is_err());
        assert!(decode_binary("K", "é").is_err());
        assert_eq!(parse_number("0x+5"), None);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let text = format!("{:?}", accounts(true));
        assert!(text.contains("alice") && !text.contains(SECRET), "{text}");
    }

    #[test]
    fn os_random_challenges_differ() {
        let a = Exchange::from_os_random().unwrap();
        let b = Exchange::from_os_random().unwrap();
        assert_ne!(a.challenge, b.challenge);
    }
}
