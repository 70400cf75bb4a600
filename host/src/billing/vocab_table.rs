//! A tokenizer vocabulary's ranks as three flat byte tables, laid out so
//! that the build can write them once and the binary can read them where
//! they lie, with no start-up work and no heap copy: pages of them become
//! resident only when a count touches them.
//!
//! - `bytes`: every token's bytes back to back, in rank order;
//! - `starts`: where the token of rank `r` starts in `bytes`, as a
//!   little-endian `u32`, with one more entry marking where the last ends;
//! - `slots`: an open-addressed hash table of little-endian `u64`s, a
//!   power of two of them, at most half full: the upper half of a slot is
//!   the upper half of its token's [`hash`], the lower half the rank plus
//!   one (0: an empty slot). A lookup probes from the slot the hash's low
//!   bits name, one slot at a time, and compares bytes only where the
//!   upper halves agree.
//!
//! `build.rs` includes this file to write the built-in vocabularies, so
//! the layout and the hash cannot drift apart between build and run.

/// The hash the slots are placed by: stable across builds and machines.
pub fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(23);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(23);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// The three tables of `tokens` (the bytes of rank 0, 1, ...).
#[cfg_attr(not(test), allow(dead_code, reason = "build.rs writes the tables"))]
pub fn build<'a>(tokens: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut starts = 0u32.to_le_bytes().to_vec();
    let mut hashes = Vec::new();
    for token in tokens {
        bytes.extend_from_slice(token);
        starts.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        hashes.push(hash(token));
    }
    let size = (hashes.len() * 2).next_power_of_two().max(2);
    let mask = size - 1;
    let mut slots = vec![0u64; size];
    for (rank, h) in hashes.iter().enumerate() {
        let mut i = *h as usize & mask;
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = (h & 0xffff_ffff_0000_0000) | (rank as u64 + 1);
    }
    let slots = slots.iter().flat_map(|s| s.to_le_bytes()).collect();
    (bytes, starts, slots)
}

/// The tables, read where they lie.
#[derive(Clone, Copy)]
pub struct Tables<'a> {
    pub bytes: &'a [u8],
    pub starts: &'a [u8],
    pub slots: &'a [u8],
}

impl<'a> Tables<'a> {
    /// Tokens in the vocabulary.
    #[cfg_attr(not(test), allow(dead_code, reason = "build.rs and tests count them"))]
    pub fn ranks(&self) -> usize {
        (self.starts.len() / 4).saturating_sub(1)
    }

    fn start(&self, rank: usize) -> usize {
        let mut w = [0u8; 4];
        if let Some(b) = self.starts.get(rank * 4..rank * 4 + 4) {
            w.copy_from_slice(b);
        }
        u32::from_le_bytes(w) as usize
    }

    /// The bytes of the token of `rank` (empty past the last rank).
    pub fn token(&self, rank: u32) -> &'a [u8] {
        let r = rank as usize;
        self.bytes
            .get(self.start(r)..self.start(r + 1))
            .unwrap_or_default()
    }

    /// The rank of the token whose bytes are `piece`, if there is one.
    pub fn rank(&self, piece: &[u8]) -> Option<u32> {
        let slots = self.slots.len() / 8;
        if slots == 0 {
            return None;
        }
        let h = hash(piece);
        let tag = h >> 32;
        let mask = slots - 1;
        let mut i = h as usize & mask;
        // At most half the slots are full, so an empty one ends every probe;
        // the bound only guards tables that were not built by `build`.
        for _ in 0..slots {
            let mut w = [0u8; 8];
            if let Some(b) = self.slots.get(i * 8..i * 8 + 8) {
                w.copy_from_slice(b);
            }
            let slot = u64::from_le_bytes(w);
            if slot == 0 {
                return None;
            }
            if slot >> 32 == tag {
                let rank = (slot as u32).wrapping_sub(1);
                if self.token(rank) == piece {
                    return Some(rank);
                }
            }
            i = (i + 1) & mask;
        }
        None
    }
}
