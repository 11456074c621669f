//! Block-header fields and the pow message they encode to.

use crate::{epoch, Error, Params, PowInput};

/// The header fields of a Vision block that VisionX hashes, plus the chain id
/// that picks the epoch seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    pub chain_id: String,
    pub height: u64,
    pub parent_hash: [u8; 32],
    pub timestamp: u64,
    pub difficulty: u64,
    pub tx_root: [u8; 32],
    pub miner: String,
}

impl BlockHeader {
    /// A header from its fields as they travel in JSON and on command lines:
    /// `parent_hash` and `tx_root` as 64 hex digits, optionally `0x`-prefixed.
    pub fn from_hex_fields(
        chain_id: &str,
        height: u64,
        parent_hash: &str,
        timestamp: u64,
        difficulty: u64,
        tx_root: &str,
        miner: &str,
    ) -> Result<Self, Error> {
        Ok(BlockHeader {
            chain_id: chain_id.to_string(),
            height,
            parent_hash: parse_hash32("parent_hash", parent_hash)?,
            timestamp,
            difficulty,
            tx_root: parse_hash32("tx_root", tx_root)?,
            miner: miner.to_string(),
        })
    }

    /// `"VPOW" || version 1 u32 LE || parent_hash || height LE || timestamp LE ||
    /// difficulty LE || nonce field 0 u64 BE || tx_root || miner len u32 LE || miner`.
    pub fn pow_message(&self) -> Vec<u8> {
        let miner = self.miner.as_bytes();
        let mut m = Vec::with_capacity(4 + 4 + 32 + 8 * 4 + 32 + 4 + miner.len());
        m.extend_from_slice(b"VPOW");
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&self.parent_hash);
        m.extend_from_slice(&self.height.to_le_bytes());
        m.extend_from_slice(&self.timestamp.to_le_bytes());
        m.extend_from_slice(&self.difficulty.to_le_bytes());
        // The nonce enters the hash separately; this field is always zero.
        m.extend_from_slice(&0u64.to_be_bytes());
        m.extend_from_slice(&self.tx_root);
        let miner_len = u32::try_from(miner.len()).expect("miner address shorter than 4 GiB");
        m.extend_from_slice(&miner_len.to_le_bytes());
        m.extend_from_slice(miner);
        m
    }

    pub fn epoch(&self, params: &Params) -> Result<u64, Error> {
        params.validate()?;
        Ok(epoch::epoch_of(self.height, params.epoch_blocks))
    }

    /// The hash input for this header under `params`.
    pub fn pow_input(&self, params: &Params) -> Result<PowInput, Error> {
        let epoch = self.epoch(params)?;
        let seed = epoch::epoch_seed(&self.chain_id, epoch);
        PowInput::new(seed, epoch, self.pow_message(), *params)
    }

    /// The chain's header rules beyond hashing (the miner address is non-empty).
    pub fn check_chain_rules(&self) -> Result<(), Error> {
        if self.miner.is_empty() {
            return Err(Error::EmptyMiner);
        }
        Ok(())
    }
}

/// Parses a 32-byte header hash field: 64 hex digits, optionally prefixed
/// with lowercase `0x`.
pub fn parse_hash32(field: &'static str, s: &str) -> Result<[u8; 32], Error> {
    parse_hex32(field, s)
}

pub(crate) fn parse_hex32(field: &'static str, s: &str) -> Result<[u8; 32], Error> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let bytes = decode_hex(field, digits)?;
    let got = bytes.len();
    bytes.try_into().map_err(|_| Error::WrongLength { field, expected: 32, got })
}

/// Decodes an even-length hex string (either case) into bytes.
pub fn decode_hex(field: &'static str, s: &str) -> Result<Vec<u8>, Error> {
    if !s.len().is_multiple_of(2) {
        return Err(Error::BadHex { field, reason: format!("odd number of hex digits ({})", s.len()) });
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(Error::BadHex { field, reason: format!("not a hex digit at position {}", 2 * i) }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BlockHeader {
        BlockHeader {
            chain_id: "devnet".into(),
            height: 0x0102,
            parent_hash: [0xaa; 32],
            timestamp: 7,
            difficulty: 1000,
            tx_root: [0xbb; 32],
            miner: "land1x".into(),
        }
    }

    #[test]
    fn pow_message_layout() {
        let m = header().pow_message();
        assert_eq!(m.len(), 4 + 4 + 32 + 8 + 8 + 8 + 8 + 32 + 4 + 6);
        assert_eq!(&m[..8], b"VPOW\x01\0\0\0");
        assert_eq!(&m[40..48], &0x0102u64.to_le_bytes());
        assert_eq!(&m[64..72], &[0u8; 8]);
        assert_eq!(&m[104..108], &6u32.to_le_bytes());
        assert_eq!(&m[108..], b"land1x");
    }

    #[test]
    fn hex_fields_parse_both_hashes_and_name_the_bad_one() {
        let (aa, bb) = ("aa".repeat(32), format!("0x{}", "bb".repeat(32)));
        let h = BlockHeader::from_hex_fields("devnet", 0x0102, &aa, 7, 1000, &bb, "land1x").unwrap();
        assert_eq!(h, header());
        let err = BlockHeader::from_hex_fields("devnet", 1, &aa, 7, 1000, "zz", "m").unwrap_err();
        assert!(matches!(err, Error::BadHex { field: "tx_root", .. }), "{err:?}");
        let err = BlockHeader::from_hex_fields("devnet", 1, "ab", 7, 1000, &aa, "m").unwrap_err();
        assert!(matches!(err, Error::WrongLength { field: "parent_hash", .. }), "{err:?}");
    }

    #[test]
    fn hash32_accepts_lowercase_0x_only() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_hash32("parent_hash", &hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_hash32("parent_hash", &format!("0x{hex}")).unwrap(), [0xab; 32]);
        assert!(parse_hash32("parent_hash", &format!("0X{hex}")).is_err());
        assert!(matches!(
            parse_hash32("tx_root", &"ab".repeat(31)),
            Err(Error::WrongLength { field: "tx_root", expected: 32, got: 31 })
        ));
        assert!(matches!(parse_hash32("tx_root", &"zz".repeat(32)), Err(Error::BadHex { .. })));
        assert!(matches!(parse_hash32("tx_root", "abc"), Err(Error::BadHex { .. })));
    }

    #[test]
    fn empty_miner_breaks_a_chain_rule_but_still_hashes() {
        let h = BlockHeader { miner: String::new(), ..header() };
        assert_eq!(h.check_chain_rules(), Err(Error::EmptyMiner));
        assert!(h.pow_input(&Params::CONSENSUS).is_ok());
        assert!(header().check_chain_rules().is_ok());
    }
}
