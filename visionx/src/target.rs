//! Difficulty, targets and digests.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A VisionX digest: 32 bytes, shown as lowercase hex (which is also a block's id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The first 8 bytes as u64 BE: the only part the target test looks at.
    pub fn top(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    /// Whether this digest meets difficulty `difficulty` (0 = no limit).
    pub fn meets_difficulty(&self, difficulty: u64) -> bool {
        Target::from_difficulty(difficulty).is_met_by(self)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Parses 64 hex digits, with an optional lowercase `0x` prefix.
    fn from_str(s: &str) -> Result<Self, Error> {
        crate::header::parse_hex32("digest", s).map(Digest)
    }
}

#[cfg(any(test, feature = "serde"))]
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(any(test, feature = "serde"))]
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The largest acceptable digest top: `floor((2^64 - 1) / difficulty)`, or no
/// limit for difficulty 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(pub u64);

impl Target {
    /// No limit: every digest meets it.
    pub const NONE: Target = Target(u64::MAX);

    pub fn from_difficulty(difficulty: u64) -> Target {
        match difficulty {
            0 => Target::NONE,
            d => Target(u64::MAX / d),
        }
    }

    /// Ties pass: a digest whose top equals the target meets it.
    pub fn is_met_by(&self, digest: &Digest) -> bool {
        digest.top() <= self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digest_with_top(top: u64, tail: u8) -> Digest {
        let mut bytes = [tail; 32];
        bytes[..8].copy_from_slice(&top.to_be_bytes());
        Digest(bytes)
    }

    #[test]
    fn difficulty_zero_and_one_accept_everything() {
        let worst = Digest([0xff; 32]);
        assert!(worst.meets_difficulty(0));
        assert!(worst.meets_difficulty(1));
        assert!(!worst.meets_difficulty(2));
    }

    #[test]
    fn hex_round_trip_and_prefix() {
        let d = digest_with_top(0x0123_4567_89ab_cdef, 0x5a);
        let hex = d.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<Digest>().unwrap(), d);
        assert_eq!(format!("0x{hex}").parse::<Digest>().unwrap(), d);
        assert!("abc".parse::<Digest>().is_err());
        assert!(format!("0X{hex}").parse::<Digest>().is_err());
    }

    /// Difficulties as pools set them (below 2^40) as well as any, each with
    /// a digest top anywhere, below its target, or within 2 of it: both
    /// sides of the rule, and its edge, are drawn.
    fn difficulty_and_top() -> impl Strategy<Value = (u64, u64)> {
        prop_oneof![1u64..1 << 40, 1u64..].prop_flat_map(|difficulty| {
            let target = u64::MAX / difficulty;
            let near = target.saturating_sub(2)..=target.saturating_add(2);
            (Just(difficulty), prop_oneof![any::<u64>(), 0..=target, near])
        })
    }

    proptest! {
        #[test]
        fn exact_boundary_top_equal_to_target_passes(
            difficulty in prop_oneof![1u64..1 << 40, 1u64..],
            tail: u8,
        ) {
            let target = Target::from_difficulty(difficulty);
            prop_assert!(digest_with_top(target.0, tail).meets_difficulty(difficulty));
            if target.0 < u64::MAX {
                prop_assert!(!digest_with_top(target.0 + 1, tail).meets_difficulty(difficulty));
            }
        }

        #[test]
        fn target_matches_the_definition((difficulty, top) in difficulty_and_top()) {
            // top <= floor((2^64-1)/d)  <=>  top * d <= 2^64 - 1, computed in u128.
            let fits = u128::from(top) * u128::from(difficulty) <= u128::from(u64::MAX);
            prop_assert_eq!(digest_with_top(top, 0).meets_difficulty(difficulty), fits);
        }
    }
}
