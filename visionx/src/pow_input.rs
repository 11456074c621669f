//! Everything one hash depends on except the nonce, validated once.

use crate::{epoch, Error, Geometry, Params};

/// The input of a VisionX hash minus the nonce: epoch seed, epoch, pow message
/// (header bytes) and params. Construction validates the params, so hashing a
/// `PowInput` cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowInput {
    epoch_seed: [u8; 32],
    epoch: u64,
    header: Vec<u8>,
    params: Params,
    geometry: Geometry,
    dataset_seed: u64,
    header_words8: Vec<u64>,
    header_words16: Vec<(u64, u64)>,
}

impl PowInput {
    pub fn new(epoch_seed: [u8; 32], epoch: u64, header: Vec<u8>, params: Params) -> Result<Self, Error> {
        let geometry = params.validate()?;
        Ok(PowInput {
            dataset_seed: epoch::fold_seed(&epoch_seed, epoch),
            header_words8: be_words(&header, 8).map(|w| w[0]).collect(),
            header_words16: be_words(&header, 16).map(|w| (w[0], w[1])).collect(),
            epoch_seed,
            epoch,
            header,
            params,
            geometry,
        })
    }

    /// The input as pools and nodes send it: `epoch_seed` as 64 hex digits
    /// and the pow message as hex (either optionally `0x`-prefixed).
    pub fn from_hex(epoch_seed: &str, epoch: u64, pow_message: &str, params: Params) -> Result<Self, Error> {
        let seed = crate::parse_hash32("epoch_seed", epoch_seed)?;
        let message = crate::header::decode_hex("pow_message", pow_message.strip_prefix("0x").unwrap_or(pow_message))?;
        PowInput::new(seed, epoch, message, params)
    }

    pub fn epoch_seed(&self) -> &[u8; 32] {
        &self.epoch_seed
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The pow message: the header bytes that are hashed.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The dataset's SplitMix64 seed, `fold_seed(epoch_seed, epoch)`.
    pub fn dataset_seed(&self) -> u64 {
        self.dataset_seed
    }

    /// The header as 8-byte big-endian words, the last zero-padded (the GPU
    /// kernel reads these too).
    pub fn header_words8(&self) -> &[u64] {
        &self.header_words8
    }

    /// The header as 16-byte chunks of two big-endian words, the last zero-padded.
    pub fn header_words16(&self) -> &[(u64, u64)] {
        &self.header_words16
    }
}

/// Splits `bytes` into chunks of `chunk` bytes (the last zero-padded on the
/// right) and reads each as big-endian u64 words.
fn be_words(bytes: &[u8], chunk: usize) -> impl Iterator<Item = [u64; 2]> + '_ {
    bytes.chunks(chunk).map(move |c| {
        let mut padded = [0u8; 16];
        padded[..c.len()].copy_from_slice(c);
        let word = |i: usize| u64::from_be_bytes(padded[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        [word(0), if chunk == 16 { word(1) } else { 0 }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_words_pad_on_the_right() {
        let input = PowInput::new([0; 32], 0, vec![1, 2, 3, 4, 5, 6, 7, 8, 9], Params::CONSENSUS).unwrap();
        assert_eq!(input.header_words8(), &[0x0102030405060708, 0x0900000000000000]);
        assert_eq!(input.header_words16(), &[(0x0102030405060708, 0x0900000000000000)]);
        let empty = PowInput::new([0; 32], 0, vec![], Params::CONSENSUS).unwrap();
        assert!(empty.header_words8().is_empty() && empty.header_words16().is_empty());
    }

    #[test]
    fn from_hex_decodes_seed_and_message() {
        let input = PowInput::from_hex(&"01".repeat(32), 4, "0x0a0b", Params::CONSENSUS).unwrap();
        assert_eq!((input.epoch_seed(), input.epoch(), input.header()), (&[1u8; 32], 4, &[10u8, 11][..]));
        assert!(matches!(
            PowInput::from_hex("01", 0, "", Params::CONSENSUS),
            Err(Error::WrongLength { field: "epoch_seed", .. })
        ));
        assert!(matches!(
            PowInput::from_hex(&"01".repeat(32), 0, "0g", Params::CONSENSUS),
            Err(Error::BadHex { field: "pow_message", .. })
        ));
    }

    #[test]
    fn out_of_limit_params_are_an_error() {
        let params = Params { mix_iters: 2_000_000, ..Params::CONSENSUS };
        assert!(matches!(PowInput::new([0; 32], 0, vec![], params), Err(Error::ParamOutOfLimit { .. })));
    }
}
