//! Mode pages (SPC-4 §7.5, SBC-3 §6.5): MODE SENSE 6/10 and MODE SELECT 6/10 over the
//! caching, control, disconnect-reconnect and informational exceptions pages.

use crate::sense::{asc, key, Sense};

/// Pages this target has, in the order "all pages" reports them.
pub(crate) const PAGES: [u8; 4] = [0x02, 0x08, 0x0a, 0x1c];

/// The mode parameters of one LU that can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ModeState {
    /// Write cache enabled (caching page).
    pub wce: bool,
    /// Descriptor-format sense (control page).
    pub d_sense: bool,
    /// Informational exceptions disabled.
    pub dexcpt: bool,
    /// Software write protect (control page, SPC-4 §7.5.8): while set, every command that
    /// would change the medium is refused with DATA PROTECT, WRITE PROTECTED.
    pub swp: bool,
}

/// Which values to report (the PC field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageControl {
    Current,
    Changeable,
    Default,
}

/// One page's bytes.
pub(crate) fn page(
    code: u8,
    pc: PageControl,
    current: &ModeState,
    default: &ModeState,
) -> Option<Vec<u8>> {
    let state = match pc {
        PageControl::Current => Some(current),
        PageControl::Default => Some(default),
        PageControl::Changeable => None,
    };
    Some(match code {
        0x02 => {
            let mut p = vec![0u8; 16];
            p[0] = 0x02;
            p[1] = 14;
            p
        }
        0x08 => {
            let mut p = vec![0u8; 20];
            p[0] = 0x08;
            p[1] = 18;
            p[2] = match state {
                Some(s) => {
                    if s.wce {
                        0x04
                    } else {
                        0
                    }
                }
                None => 0x04,
            };
            p
        }
        0x0a => {
            let mut p = vec![0u8; 12];
            p[0] = 0x0a;
            p[1] = 10;
            match state {
                Some(s) => {
                    p[2] = if s.d_sense { 0x04 } else { 0 };
                    p[3] = 0x10; // unrestricted reordering allowed
                    p[4] = if s.swp { 0x08 } else { 0 };
                    p[8..10].copy_from_slice(&0xffffu16.to_be_bytes()); // busy timeout: unlimited
                }
                None => {
                    p[2] = 0x04; // D_SENSE
                    p[4] = 0x08; // SWP
                }
            }
            p
        }
        0x1c => {
            let mut p = vec![0u8; 12];
            p[0] = 0x1c;
            p[1] = 10;
            p[2] = match state {
                Some(s) => {
                    if s.dexcpt {
                        0x08
                    } else {
                        0
                    }
                }
                None => 0x08,
            };
            p
        }
        _ => return None,
    })
}

/// Applies the pages of a MODE SELECT parameter list (after the header and block
/// descriptors). Only changeable bits may differ from the current values.
pub(crate) fn select(mut list: &[u8], state: &mut ModeState) -> Result<(), Sense> {
    let bad = || Sense::new(key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_PARAMETER_LIST);
    let mut next = *state;
    while !list.is_empty() {
        if list.len() < 2 {
            return Err(Sense::new(
                key::ILLEGAL_REQUEST,
                asc::PARAMETER_LIST_LENGTH_ERROR,
            ));
        }
        let code = list[0] & 0x3f;
        if list[0] & 0x40 != 0 {
            return Err(bad()); // subpage format: none of our pages has subpages
        }
        let len = usize::from(list[1]) + 2;
        if list.len() < len {
            return Err(Sense::new(
                key::ILLEGAL_REQUEST,
                asc::PARAMETER_LIST_LENGTH_ERROR,
            ));
        }
        let given = &list[..len];
        let current = page(code, PageControl::Current, &next, &next).ok_or_else(bad)?;
        let mask = page(code, PageControl::Changeable, &next, &next).ok_or_else(bad)?;
        if given.len() != current.len() {
            return Err(bad());
        }
        for i in 2..len {
            if (given[i] ^ current[i]) & !mask[i] != 0 {
                return Err(bad());
            }
        }
        match code {
            0x08 => next.wce = given[2] & 0x04 != 0,
            0x0a => {
                next.d_sense = given[2] & 0x04 != 0;
                next.swp = given[4] & 0x08 != 0;
            }
            0x1c => next.dexcpt = given[2] & 0x08 != 0,
            _ => {}
        }
        list = &list[len..];
    }
    *state = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ModeState = ModeState {
        wce: true,
        d_sense: false,
        dexcpt: false,
        swp: false,
    };

    #[test]
    fn swp_is_changeable() {
        let mut s = S;
        let mask = page(0x0a, PageControl::Changeable, &s, &s).unwrap();
        assert_eq!(mask[4] & 0x08, 0x08, "SWP is in the changeable mask");
        let mut control = page(0x0a, PageControl::Current, &s, &s).unwrap();
        assert_eq!(control[4] & 0x08, 0);
        control[4] |= 0x08;
        select(&control, &mut s).unwrap();
        assert!(s.swp);
        assert_eq!(
            page(0x0a, PageControl::Current, &s, &s).unwrap()[4] & 0x08,
            0x08
        );
        control[4] &= !0x08;
        select(&control, &mut s).unwrap();
        assert!(!s.swp);
    }

    #[test]
    fn select_changes_only_changeable_bits() {
        let mut s = S;
        let mut caching = page(0x08, PageControl::Current, &s, &s).unwrap();
        caching[2] = 0;
        select(&caching, &mut s).unwrap();
        assert!(!s.wce);
        let mut control = page(0x0a, PageControl::Current, &s, &s).unwrap();
        control[2] |= 0x04;
        select(&control, &mut s).unwrap();
        assert!(s.d_sense);
        let mut bad = page(0x0a, PageControl::Current, &s, &s).unwrap();
        bad[3] ^= 0x02; // QERR is not changeable
        assert!(select(&bad, &mut s).is_err());
        assert!(select(&[0x30, 0x02, 0, 0], &mut s).is_err(), "unknown page");
    }
}
