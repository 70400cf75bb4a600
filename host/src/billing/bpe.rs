//! A compact byte-pair encoder that only counts.
//!
//! tiktoken's own structures keep each vocabulary several times over (bytes
//! to rank, rank to bytes, sorted bytes, a regex per thread): about 41 MB
//! resident for `o200k_base` and 23 MB for `cl100k_base`, built from its
//! base64 files at start. Counting needs only bytes → rank, so a
//! [`Vocabulary`] reads the flat tables of [`super::vocab_table`]: the
//! build writes them for the built-in vocabularies (`build.rs`, from
//! `tiktoken-rs`), and the binary reads them where they lie, so a
//! vocabulary costs no start-up work and no heap, and only the pages a
//! count touches become resident.
//!
//! The counts are tiktoken's: text is split with the vocabulary's pattern,
//! and each piece that is not a token is merged pair by pair, lowest rank
//! first (leftmost on ties), until no adjacent pair is a token.
//!
//! tiktoken's patterns need a backtracking engine for one look-ahead,
//! `\s+(?!\S)`, and that engine spent more time splitting a short prompt
//! than the merges did. [`Splitter`] runs an equivalent pattern without it
//! on the `regex` crate's automata, and gives the look-ahead's answer back
//! by hand.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use regex::Regex;

use super::vocab_table::Tables;

type Rank = u32;

/// Pieces at least this long are merged with a heap instead of a rescan.
const LONG_PIECE: usize = 128;

/// A tiktoken pre-tokenizing pattern, run without backtracking.
///
/// The patterns end with `\s+(?!\S)` followed by `\s+` (`o200k_base`) or
/// `\s` (`cl100k_base`). The look-ahead's alternative is reached only at a
/// run of whitespace with no line break that the earlier alternatives did
/// not take, and it takes all of the run but its last character when text
/// follows (that character then leads the next piece); the alternatives
/// after it take the run whole, or its one character. So both endings
/// become `\s+`, and a piece that is such a run, of two characters or
/// more, with text after it, gives its last character back. The
/// patterns' possessive quantifiers never give up anything a match could
/// use, so their greedy forms match alike.
pub struct Splitter {
    regex: Regex,
}

impl Splitter {
    pub fn new(pattern: &str) -> anyhow::Result<Self> {
        let mut plain = None;
        for ending in [r"|\s+(?!\S)|\s+", r"|\s+(?!\S)|\s"] {
            if let Some(head) = pattern.strip_suffix(ending) {
                plain = Some(format!(r"{head}|\s+"));
                break;
            }
        }
        let plain = plain.unwrap_or_else(|| pattern.to_owned());
        if ["(?!", "(?=", "(?<", r"\+"]
            .iter()
            .any(|x| plain.contains(x))
        {
            anyhow::bail!("the pattern has a construct this splitter cannot run: {pattern}");
        }
        // A possessive quantifier (`?+`, `*+`, `++`, `{1,3}+`) made greedy.
        let possessive = Regex::new(r"([?*+]|\{[0-9]+(?:,[0-9]*)?\})\+")?;
        let plain = possessive.replace_all(&plain, "$1");
        Ok(Self {
            regex: Regex::new(&plain)?,
        })
    }

    /// The pieces of `text`, as tiktoken's pattern splits it.
    pub fn pieces<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> + use<'_, 't> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let found = self.regex.find_at(text, at)?;
            let mut end = found.end();
            let piece = found.as_str();
            if end < text.len() && is_spaces_run(piece) {
                end -= piece.chars().next_back().map_or(0, char::len_utf8);
            }
            at = end;
            Some(&text[found.start()..end])
        })
    }
}

/// Two characters or more of whitespace, none a line break.
fn is_spaces_run(piece: &str) -> bool {
    let mut chars = piece.chars();
    chars.next().is_some()
        && chars.next().is_some()
        && piece
            .chars()
            .all(|c| c.is_whitespace() && c != '\r' && c != '\n')
}

/// One vocabulary: its pre-tokenizing pattern and its ranks.
pub struct Vocabulary {
    pattern: Splitter,
    /// The tables of [`super::vocab_table`]: borrowed from the binary for
    /// the built-in vocabularies, owned for the tests' toy ones.
    bytes: Cow<'static, [u8]>,
    starts: Cow<'static, [u8]>,
    slots: Cow<'static, [u8]>,
}

impl Vocabulary {
    /// A vocabulary of `tokens` (the bytes of rank 0, 1, ...) split with
    /// `pattern`, its tables built now.
    #[cfg(test)]
    pub fn new<'a>(
        pattern: &str,
        tokens: impl IntoIterator<Item = &'a [u8]>,
    ) -> anyhow::Result<Self> {
        let (bytes, starts, slots) = super::vocab_table::build(tokens);
        Ok(Self {
            pattern: Splitter::new(pattern)?,
            bytes: Cow::Owned(bytes),
            starts: Cow::Owned(starts),
            slots: Cow::Owned(slots),
        })
    }

    /// A vocabulary over tables the build wrote, split with `pattern`.
    pub fn built_in(pattern: &str, tables: Tables<'static>) -> anyhow::Result<Self> {
        Ok(Self {
            pattern: Splitter::new(pattern)?,
            bytes: Cow::Borrowed(tables.bytes),
            starts: Cow::Borrowed(tables.starts),
            slots: Cow::Borrowed(tables.slots),
        })
    }

    fn tables(&self) -> Tables<'_> {
        Tables {
            bytes: &self.bytes,
            starts: &self.starts,
            slots: &self.slots,
        }
    }

    fn rank(&self, piece: &[u8]) -> Option<Rank> {
        self.tables().rank(piece)
    }

    fn pair_rank(&self, piece: &[u8]) -> Rank {
        self.rank(piece).unwrap_or(Rank::MAX)
    }

    /// Tokens in `text`, as tiktoken's `encode_ordinary` would produce
    /// (special tokens are read as ordinary text).
    pub fn count(&self, text: &str) -> u64 {
        let mut total = 0u64;
        for piece in self.pattern.pieces(text) {
            let piece = piece.as_bytes();
            total += if self.rank(piece).is_some() {
                1
            } else if piece.len() < LONG_PIECE {
                self.merge_short(piece)
            } else {
                self.merge_long(piece)
            };
        }
        total
    }

    /// Tokens a piece merges into, rescanning for the lowest pair: the
    /// cheapest way for the short pieces that ordinary text splits into.
    fn merge_short(&self, piece: &[u8]) -> u64 {
        if piece.len() < 2 {
            return piece.len() as u64;
        }
        // Part boundaries, each with the rank of the pair of parts that
        // starts there (MAX where there is none).
        let mut parts: Vec<(usize, Rank)> = (0..piece.len() - 1)
            .map(|i| (i, self.pair_rank(&piece[i..i + 2])))
            .collect();
        parts.push((piece.len() - 1, Rank::MAX));
        parts.push((piece.len(), Rank::MAX));
        loop {
            let mut lowest = (Rank::MAX, 0);
            for (i, &(_, rank)) in parts[..parts.len() - 1].iter().enumerate() {
                if rank < lowest.0 {
                    lowest = (rank, i);
                }
            }
            if lowest.0 == Rank::MAX {
                break;
            }
            let i = lowest.1;
            // Parts i and i + 1 become one: the pairs that start at i - 1
            // and at i now span one part more.
            let span = |parts: &[(usize, Rank)], at: usize| match parts.get(at + 3) {
                Some(&(end, _)) => self.pair_rank(&piece[parts[at].0..end]),
                None => Rank::MAX,
            };
            if i > 0 {
                parts[i - 1].1 = span(&parts, i - 1);
            }
            parts[i].1 = span(&parts, i);
            parts.remove(i + 1);
        }
        (parts.len() - 1) as u64
    }

    /// The same merge for long pieces (a run of base64, a long word):
    /// pairs wait in a heap, parts are linked both ways, and a pair whose
    /// parts changed since it was queued is skipped when it comes up.
    fn merge_long(&self, piece: &[u8]) -> u64 {
        let n = piece.len();
        // Part starting at byte i (if alive): where it ends, and where the
        // part before it starts.
        let mut end: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, start: usize, end: &[usize]| {
            let mid = end[start];
            if mid < n {
                let rank = self.pair_rank(&piece[start..end[mid]]);
                if rank != Rank::MAX {
                    heap.push(Reverse((rank, start, end[mid])));
                }
            }
        };
        for i in 0..n {
            push(&mut heap, i, &end);
        }
        let mut parts = n as u64;
        while let Some(Reverse((_, start, pair_end))) = heap.pop() {
            let mid = end[start];
            if !alive[start] || mid >= n || end[mid] != pair_end {
                continue;
            }
            alive[mid] = false;
            end[start] = pair_end;
            if pair_end < n {
                prev[pair_end] = start;
            }
            parts -= 1;
            push(&mut heap, start, &end);
            if start > 0 {
                push(&mut heap, prev[start], &end);
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Vocabulary {
        // Ranks: the bytes first, then merges in the order they were learnt.
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for merge in ["ab", "bc", "abc", "cd", "abcd"] {
            tokens.push(merge.as_bytes().to_vec());
        }
        Vocabulary::new(r"\S+|\s+", tokens.iter().map(Vec::as_slice)).unwrap()
    }

    #[test]
    fn merges_lowest_rank_first_and_counts_parts() {
        let v = toy();
        assert_eq!(v.tables().ranks(), 261);
        assert_eq!(v.tables().token(258), b"abc");
        // "abcdx": ab (the lowest pair), then abc, then abcd; x stays.
        assert_eq!(v.count("abcd"), 1);
        assert_eq!(v.count("abcdx"), 2);
        assert_eq!(v.count("bcd"), 2);
        assert_eq!(v.count("x y"), 3);
        assert_eq!(v.count(""), 0);
    }

    #[test]
    fn long_and_short_merges_agree() {
        let v = toy();
        let mut text = String::new();
        for i in 0..400 {
            text.push_str(["ab", "c", "d", "bc", "x", "abcd"][i % 6]);
            assert_eq!(
                v.merge_short(text.as_bytes()),
                v.merge_long(text.as_bytes()),
                "{text}"
            );
        }
    }
}
