//! Curve volume specs as tgt's Curve driver writes them: `cbd:<pool>//<path>_<owner>_[:<conf>]`.
//!
//! The pool is ignored by Curve; `cbd:pool//iscsi_test_` names volume `/iscsi` owned by `test`.
//! An optional `:<conf>` suffix names the client configuration file.

/// Longest spec accepted, in bytes.
pub const SPEC_BYTES_MAX: usize = 4096;

/// A parsed volume spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The pool as written (unused by Curve).
    pub pool: String,
    /// Absolute volume path, e.g. `/iscsi`.
    pub path: String,
    /// The volume owner.
    pub owner: String,
    /// Client configuration file, if given.
    pub conf: Option<String>,
}

/// Why a spec is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// No `cbd:` prefix.
    #[error("`{0}` is not a Curve volume spec: it must start with `cbd:` (e.g. cbd:pool//volume_owner_)")]
    NotCurve(String),
    /// No `//` between pool and path.
    #[error("`{0}`: write the volume after `//`, e.g. cbd:pool//volume_owner_")]
    NoPath(String),
    /// The `_owner_` part is missing or empty.
    #[error("`{0}`: the volume name must end in `_<owner>_`, e.g. cbd:pool//volume_owner_")]
    NoOwner(String),
    /// Too long.
    #[error("volume spec longer than {SPEC_BYTES_MAX} bytes")]
    TooLong,
}

impl VolumeSpec {
    /// Parses a spec.
    pub fn parse(text: &str) -> Result<VolumeSpec, SpecError> {
        if text.len() > SPEC_BYTES_MAX {
            return Err(SpecError::TooLong);
        }
        let rest = text
            .strip_prefix("cbd:")
            .ok_or_else(|| SpecError::NotCurve(text.into()))?;
        let (pool, rest) = rest
            .split_once("//")
            .ok_or_else(|| SpecError::NoPath(text.into()))?;
        // The configuration suffix follows the closing underscore of the owner.
        let (name, conf) = match rest.rfind("_:") {
            Some(at) => (&rest[..=at], Some(rest[at + 2..].to_string())),
            None => (rest, None),
        };
        let name = name
            .strip_suffix('_')
            .ok_or_else(|| SpecError::NoOwner(text.into()))?;
        let (path, owner) = name
            .rsplit_once('_')
            .ok_or_else(|| SpecError::NoOwner(text.into()))?;
        if path.is_empty() || owner.is_empty() {
            return Err(SpecError::NoOwner(text.into()));
        }
        Ok(VolumeSpec {
            pool: pool.to_string(),
            path: format!("/{}", path.trim_start_matches('/')),
            owner: owner.to_string(),
            conf: conf.filter(|c| !c.is_empty()),
        })
    }

    /// The name libcbd opens and sizes the volume by: the spec without its `:<conf>` suffix,
    /// e.g. `cbd:pool//iscsi_test_`.
    pub fn name(&self) -> String {
        format!("cbd:{}/{}_{}_", self.pool, self.path, self.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_spec() {
        let s = VolumeSpec::parse("cbd:pool//iscsi_test_").unwrap();
        assert_eq!((s.path.as_str(), s.owner.as_str()), ("/iscsi", "test"));
        assert_eq!(s.conf, None);
        assert_eq!(s.name(), "cbd:pool//iscsi_test_");
    }

    #[test]
    fn with_conf_and_nested_path() {
        let s = VolumeSpec::parse("cbd:p//dir/vol_a_b_:/etc/curve/client.conf").unwrap();
        assert_eq!(s.path, "/dir/vol_a");
        assert_eq!(s.owner, "b");
        assert_eq!(s.conf.as_deref(), Some("/etc/curve/client.conf"));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            VolumeSpec::parse("/dev/sda"),
            Err(SpecError::NotCurve(_))
        ));
        assert!(matches!(
            VolumeSpec::parse("cbd:pool/x_y_"),
            Err(SpecError::NoPath(_))
        ));
        assert!(matches!(
            VolumeSpec::parse("cbd:pool//x"),
            Err(SpecError::NoOwner(_))
        ));
        assert!(matches!(
            VolumeSpec::parse("cbd:pool//_y_"),
            Err(SpecError::NoOwner(_))
        ));
    }
}
