//! `key=value` text (RFC 7143 §6.1): parsing with limits, and writing.

/// Longest key name, in bytes (RFC 7143 §6.1).
pub const KEY_BYTES_MAX: usize = 63;
/// Longest value, in bytes (RFC 7143 §6.1: 255, except a few keys that may carry 8192).
pub const VALUE_BYTES_MAX: usize = 8192;
/// Most pairs in one exchange.
pub const PAIRS_MAX: usize = 256;
/// Most text accumulated across Continue PDUs, in bytes.
pub const TEXT_BYTES_MAX: usize = 64 << 10;

/// What is wrong with a text segment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    /// A pair has no `=`.
    #[error("text pair without '=': {0:?}")]
    NoEquals(String),
    /// A key name is empty or too long, or not printable.
    #[error("bad key name {0:?}")]
    BadKey(String),
    /// A value is too long.
    #[error("value of {key} is {len} bytes, more than {VALUE_BYTES_MAX}")]
    ValueTooLong {
        /// The key.
        key: String,
        /// The value's length.
        len: usize,
    },
    /// Too many pairs.
    #[error("more than {PAIRS_MAX} key=value pairs")]
    TooManyPairs,
    /// Too much text across continuations.
    #[error("more than {TEXT_BYTES_MAX} bytes of text")]
    TooLong,
    /// A key appeared twice.
    #[error("key {0} sent twice")]
    Duplicate(String),
}

/// Parses `key=value\0key=value\0...` (a trailing part without NUL is accepted).
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    if data.len() > TEXT_BYTES_MAX {
        return Err(TextError::TooLong);
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for raw in data.split(|&b| b == 0) {
        if raw.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(raw);
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| TextError::NoEquals(text.chars().take(64).collect()))?;
        if k.is_empty()
            || k.len() > KEY_BYTES_MAX
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.+@_".contains(&b))
        {
            return Err(TextError::BadKey(k.chars().take(64).collect()));
        }
        if v.len() > VALUE_BYTES_MAX {
            return Err(TextError::ValueTooLong {
                key: k.into(),
                len: v.len(),
            });
        }
        if pairs.len() >= PAIRS_MAX {
            return Err(TextError::TooManyPairs);
        }
        if pairs.iter().any(|(pk, _)| pk == k) {
            return Err(TextError::Duplicate(k.into()));
        }
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok(pairs)
}

/// Appends `key=value\0`.
pub fn push(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let mut t = Vec::new();
        push(&mut t, "InitiatorName", "iqn.x");
        push(&mut t, "SessionType", "Normal");
        let p = parse(&t).unwrap();
        assert_eq!(p[1], ("SessionType".into(), "Normal".into()));
        assert!(matches!(parse(b"novalue\0"), Err(TextError::NoEquals(_))));
        assert!(matches!(parse(b"a=1\0a=2\0"), Err(TextError::Duplicate(_))));
        let long_key = format!("{}=1", "k".repeat(64));
        assert!(matches!(
            parse(long_key.as_bytes()),
            Err(TextError::BadKey(_))
        ));
        let many: Vec<u8> = (0..300)
            .flat_map(|i| format!("X-k{i}=1\0").into_bytes())
            .collect();
        assert_eq!(parse(&many), Err(TextError::TooManyPairs));
        assert_eq!(
            parse(&vec![b'a'; TEXT_BYTES_MAX + 1]),
            Err(TextError::TooLong)
        );
    }
}
