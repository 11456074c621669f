//! A segment's found list as the kernel leaves it, read and checked on the
//! host. The layout: the finds counted, the lane-steps finished (each lane
//! adds one for every slice of the mix loop it finished, so a kernel a
//! driver cut short shows), then nine words an entry: the lane in the
//! batch, then the digest as four little-endian `u64` word pairs. Entries
//! past the list's capacity are counted, not stored.

use visionx::{Digest, Found};

/// A found list no working kernel writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoundListError {
    #[error("the list has no head")]
    NoHead,
    #[error("{finished} of {expected} lane-steps ({lanes} lanes x {steps} steps) finished (the kernel was cut short)")]
    CutShort { finished: u32, expected: u32, lanes: u32, steps: u32 },
    #[error("{total} finds counted in {lanes} lanes")]
    CountPastSegment { total: u32, lanes: u32 },
    #[error("the list is shorter than its count")]
    ShorterThanCount,
    #[error("lane {lane} in a batch of {batch}")]
    LaneOutsideBatch { lane: u32, batch: u32 },
}

/// One segment's found list, as read back (the layout: the module's doc).
pub(crate) struct FoundList<'a> {
    pub(crate) words: &'a [u32],
    pub(crate) segment_lanes: u32,
    /// The lanes this batch ran in the segment, and the steps each ran:
    /// each lane must have finished each step.
    pub(crate) lanes_run: u32,
    pub(crate) steps: u32,
    /// Entries the list has room for (more are counted, not stored).
    pub(crate) capacity: u32,
    pub(crate) batch_lanes: u32,
}

impl FoundList<'_> {
    /// Appends the entries to `found`; returns how many more were counted
    /// than stored (finds lost: the list was full). A list no working kernel writes (lanes that did not finish,
    /// a count past the segment's lanes, a lane outside the batch) is an
    /// error: the CPU re-check sees only what is listed, never what is
    /// missing or garbled into a nonce of another batch.
    pub(crate) fn read(&self, nonce_base: u64, found: &mut Vec<Found>) -> Result<u32, FoundListError> {
        let (total, finished) = match self.words {
            [total, finished, ..] => (*total, *finished),
            _ => return Err(FoundListError::NoHead),
        };
        // (Wrapping, as the kernel's counter does: past 2^32 lane-steps,
        // only with tiny tables and a very small split.)
        let expected = self.lanes_run.wrapping_mul(self.steps);
        if finished != expected {
            return Err(FoundListError::CutShort { finished, expected, lanes: self.lanes_run, steps: self.steps });
        }
        if total > self.segment_lanes {
            return Err(FoundListError::CountPastSegment { total, lanes: self.segment_lanes });
        }
        let stored = total.min(self.capacity) as usize;
        let entries = self.words.get(2..2 + stored * 9).ok_or(FoundListError::ShorterThanCount)?;
        for e in entries.chunks_exact(9) {
            if e[0] >= self.batch_lanes {
                return Err(FoundListError::LaneOutsideBatch { lane: e[0], batch: self.batch_lanes });
            }
            let mut digest = [0u8; 32];
            for (i, pair) in e[1..].chunks_exact(2).enumerate() {
                let word = u64::from(pair[0]) | u64::from(pair[1]) << 32;
                digest[i * 8..i * 8 + 8].copy_from_slice(&word.to_be_bytes());
            }
            found.push(Found { nonce: nonce_base + u64::from(e[0]), digest: Digest(digest) });
        }
        Ok(total - stored as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A found list with `count` in its head and these entries (lane,
    /// digest's first word), room for `capacity`.
    fn list(count: u32, entries: &[(u32, u32)], capacity: u32) -> Vec<u32> {
        let mut words = vec![count, LANES];
        for &(lane, word) in entries {
            words.extend([lane, word, 0, 0, 0, 0, 0, 0, 0]);
        }
        words.resize(2 + capacity as usize * 9, 0);
        words
    }

    /// Lane-steps the lists above finished: 100 lanes, 2 steps each.
    const LANES: u32 = 200;

    #[test]
    fn found_lists_are_read_and_checked() {
        let read = |words: &[u32], batch_lanes: u32| {
            let list =
                FoundList { words, segment_lanes: 256, lanes_run: LANES / 2, steps: 2, capacity: 2, batch_lanes };
            let mut found = Vec::new();
            list.read(1_000, &mut found).map(|lost| (lost, found.iter().map(|f| f.nonce).collect::<Vec<_>>()))
        };
        type Read = Result<(u32, Vec<u64>), &'static str>;
        let mut cut_short = list(0, &[], 2);
        cut_short[1] = LANES - 1;
        #[rustfmt::skip]
        let cases: [(Vec<u32>, u32, Read, &str); 8] = [
            (list(0, &[], 2), 512, Ok((0, vec![])), "nothing found"),
            (list(2, &[(3, 9), (300, 9)], 2), 512, Ok((0, vec![1_003, 1_300])), "lanes are the batch's"),
            (list(5, &[(3, 9), (4, 9)], 2), 512, Ok((3, vec![1_003, 1_004])), "more counted than stored"),
            (list(257, &[(3, 9), (4, 9)], 2), 512, Err("257 finds counted in 256 lanes"), "a count past the segment"),
            (list(1, &[(512, 9)], 2), 512, Err("lane 512 in a batch of 512"), "a lane past the batch"),
            (vec![2, LANES, 3], 512, Err("the list is shorter than its count"), "a short list"),
            (vec![0], 512, Err("the list has no head"), "no head"),
            (cut_short, 512, Err("199 of 200 lane-steps (100 lanes x 2 steps) finished (the kernel was cut short)"), "a lane missed a step"),
        ];
        for (words, batch, expected, why) in cases {
            assert_eq!(read(&words, batch).map_err(|e| e.to_string()), expected.map_err(str::to_string), "{why}");
        }
        // The digest's words are big-endian bytes of little-endian u64 pairs.
        let mut found = Vec::new();
        FoundList {
            words: &list(1, &[(0, 0x0102_0304)], 1),
            segment_lanes: 256,
            lanes_run: LANES,
            steps: 1,
            capacity: 1,
            batch_lanes: 1,
        }
        .read(0, &mut found)
        .unwrap();
        assert_eq!(found[0].digest.0[..8], [0, 0, 0, 0, 1, 2, 3, 4]);
    }
}
