//! Counting tokens where the upstream did not: for the estimate a hold is
//! placed with, and for streams that end without a usage report.
//!
//! OpenAI models are counted with their own BPE (tiktoken's `o200k_base`
//! for the GPT-4o generation and later, `cl100k_base` for GPT-4 and 3.5).
//! Other vendors' tokenizers are not public or not shipped; `o200k_base` is
//! used for them as an approximation (modern BPE vocabularies land within
//! roughly ±20 % of it on English and code). Chat messages add OpenAI's
//! framing overhead: 3 tokens per message and 3 to prime the reply.

use std::sync::LazyLock;

use serde_json::Value;

use super::bpe::Vocabulary;

static O200K: LazyLock<Option<Vocabulary>> =
    LazyLock::new(|| built_in(O200K_PATTERN, vocabularies::O200K_BASE));
static CL100K: LazyLock<Option<Vocabulary>> =
    LazyLock::new(|| built_in(CL100K_PATTERN, vocabularies::CL100K_BASE));

/// The vocabularies' tables, written by the build (`build.rs`) from
/// `tiktoken-rs`'s `o200k_base` and `cl100k_base`.
mod vocabularies {
    include!(concat!(env!("OUT_DIR"), "/vocabularies.rs"));
}

/// `o200k_base`'s pre-tokenizing pattern, as tiktoken publishes it.
const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// `cl100k_base`'s pre-tokenizing pattern, as tiktoken publishes it.
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

fn built_in(pattern: &str, tables: super::vocab_table::Tables<'static>) -> Option<Vocabulary> {
    match Vocabulary::built_in(pattern, tables) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "a tokenizer's pattern could not be compiled: counts fall back to four bytes a token");
            None
        }
    }
}

/// Tokens for an image part when its size is unknown (OpenAI's low-detail
/// price; high-detail images cost more, and the upstream's report wins).
const IMAGE_TOKENS: u64 = 85;

/// Compile `o200k_base`'s pattern now rather than on the first request: it
/// counts for every current model. `cl100k_base`'s compiles on the first
/// call of a GPT-4 or GPT-3.5 model.
pub fn warm_up() {
    LazyLock::force(&O200K);
}

fn encoder(model: &str) -> Option<&'static Vocabulary> {
    let m = model.to_ascii_lowercase();
    let legacy = (m.starts_with("gpt-4") && !m.starts_with("gpt-4o") && !m.starts_with("gpt-4.1"))
        || m.starts_with("gpt-3.5")
        || m.starts_with("text-embedding");
    if legacy {
        CL100K.as_ref()
    } else {
        O200K.as_ref()
    }
}

/// Tokens in `text` for `model`.
pub fn count(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match encoder(model) {
        Some(vocabulary) => vocabulary.count(text),
        // The vocabularies ship inside the binary; this is a last resort.
        None => (text.len() as u64).div_ceil(4),
    }
}

/// Bytes of a request's text counted token by token before its call. The
/// rest of a longer request is estimated at the rate counted so far: at
/// about 15 ns a byte, counting a 1 MB prompt whole would cost 15 ms of CPU
/// per call, mostly for nothing, since upstreams report the tokens they
/// read. An estimate only sizes the hold and the rate limits; the bill
/// takes the upstream's figure, or a whole count when there is none.
pub const COUNTED_AHEAD: usize = 32 * 1024;

/// Tokens of a request's texts, counted up to [`COUNTED_AHEAD`] bytes and
/// estimated beyond.
pub struct Estimate<'m> {
    model: &'m str,
    /// Bytes still to count token by token.
    left: usize,
    counted_bytes: u64,
    counted_tokens: u64,
    whole: bool,
}

impl<'m> Estimate<'m> {
    pub fn new(model: &'m str) -> Self {
        Self {
            model,
            left: COUNTED_AHEAD,
            counted_bytes: 0,
            counted_tokens: 0,
            whole: true,
        }
    }

    /// Tokens in `text`: counted while the budget lasts; past it, what is
    /// left over is estimated at the rate counted so far.
    pub fn text(&mut self, text: &str) -> u64 {
        let mut head = text.len().min(self.left);
        while !text.is_char_boundary(head) {
            head -= 1;
        }
        let counted = count(self.model, &text[..head]);
        self.left -= head;
        self.counted_bytes += head as u64;
        self.counted_tokens += counted;
        let rest = (text.len() - head) as u64;
        if rest == 0 {
            return counted;
        }
        self.whole = false;
        let estimated = if self.counted_bytes == 0 {
            rest.div_ceil(4)
        } else {
            (rest * self.counted_tokens).div_ceil(self.counted_bytes)
        };
        counted + estimated
    }

    /// Whether every text so far was counted whole.
    pub fn is_exact(&self) -> bool {
        self.whole
    }
}

/// Prompt tokens of a chat request: messages (text and image parts, tool
/// calls), plus the tool definitions.
pub fn count_chat(model: &str, request: &Value) -> u64 {
    chat_tokens(request, &mut |text| count(model, text))
}

/// [`count_chat`] within the budget of an [`Estimate`]: the tokens, and
/// whether they were all counted.
pub fn estimate_chat(model: &str, request: &Value) -> (u64, bool) {
    let mut estimate = Estimate::new(model);
    let tokens = chat_tokens(request, &mut |text| estimate.text(text));
    (tokens, estimate.is_exact())
}

fn chat_tokens(request: &Value, count: &mut impl FnMut(&str) -> u64) -> u64 {
    let mut total = 3; // every reply is primed with <|start|>assistant<|message|>
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for message in messages {
            total += 3;
            if let Some(role) = message.get("role").and_then(Value::as_str) {
                total += count(role);
            }
            if let Some(name) = message.get("name").and_then(Value::as_str) {
                total += count(name) + 1;
            }
            total += content_tokens(message.get("content"), count);
            if let Some(calls) = message.get("tool_calls") {
                total += count(&calls.to_string());
            }
        }
    }
    for key in ["tools", "functions"] {
        if let Some(tools) = request.get(key).filter(|t| !t.is_null()) {
            total += count(&tools.to_string());
        }
    }
    total
}

fn content_tokens(content: Option<&Value>, count: &mut impl FnMut(&str) -> u64) -> u64 {
    match content {
        Some(Value::String(s)) => count(s),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, &mut *count),
                Some("image_url") | Some("input_image") | Some("image") => IMAGE_TOKENS,
                _ => count(&part.to_string()),
            })
            .sum(),
        Some(Value::Null) | None => 0,
        Some(other) => count(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The tables the build wrote hold every ordinary token of tiktoken's
    /// vocabularies at its rank, and find each by its bytes.
    #[test]
    fn the_built_in_tables_are_tiktokens_vocabularies() {
        assert_eq!(O200K_PATTERN, tiktoken_rs::O200K_BASE_PAT_STR);
        for (tables, bpe, size) in [
            (
                vocabularies::O200K_BASE,
                tiktoken_rs::o200k_base().unwrap(),
                199_998,
            ),
            (
                vocabularies::CL100K_BASE,
                tiktoken_rs::cl100k_base().unwrap(),
                100_256,
            ),
        ] {
            assert_eq!(tables.ranks(), size);
            for rank in 0..size as u32 {
                let token = tables.token(rank);
                assert_eq!(token, bpe.decode_bytes(&[rank]).unwrap(), "rank {rank}");
                assert_eq!(tables.rank(token), Some(rank));
            }
            assert_eq!(tables.rank(b"<|endoftext|>"), None);
            assert_eq!(tables.rank(b""), None);
        }
    }

    #[test]
    fn counts_with_the_models_vocabulary() {
        // Reference counts from tiktoken.
        assert_eq!(count("gpt-4o", "Hello, world!"), 4);
        assert_eq!(count("gpt-3.5-turbo", "Hello, world!"), 4);
        assert_eq!(count("gpt-4o", ""), 0);
        assert!(
            count(
                "claude-sonnet-4",
                "The quick brown fox jumps over the lazy dog."
            ) >= 9
        );
    }

    /// The compact vocabularies count exactly as tiktoken's own encoders.
    #[test]
    fn counts_match_tiktoken() {
        // Long pieces: one word of varied letters, and base64.
        let long_word = "pneumonoultramicroscopicsilicovolcanoconiosis".repeat(6);
        let base64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
            .repeat(20);
        let texts = [
            "Hello, world!".to_owned(),
            "The quick brown fox jumps over the lazy dog. It's 3:45pm, isn't it?".to_owned(),
            "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n\n\t\t  trailing   ".to_owned(),
            "日本語のテキストと中文文本，还有한국어 텍스트。".to_owned(),
            "emoji 🤖🚀👍🏽 and accents: café naïve Ångström".to_owned(),
            "1234567890 3.14159 -42 1e10 0xDEADBEEF".to_owned(),
            " ".repeat(300),
            "\n\n\n   \r\n x".to_owned(),
            "<|endoftext|> is read as text".to_owned(),
            long_word,
            base64,
            "a".repeat(1000),
            // Runs of whitespace, where the patterns' look-ahead decides.
            "a  b   !    c\t\t d \u{3000}\u{3000}e  \u{3000}".to_owned(),
            "  leading, trailing  ".to_owned(),
            "x \n  y\r\n\r\n   \t z  \n".to_owned(),
            "  'll   've \t'S  123   4567".to_owned(),
        ];
        let o200k = tiktoken_rs::o200k_base().unwrap();
        let cl100k = tiktoken_rs::cl100k_base().unwrap();
        for text in &texts {
            assert_eq!(
                count("gpt-4o", text),
                o200k.encode_ordinary(text).len() as u64,
                "o200k: {text}"
            );
            assert_eq!(
                count("gpt-4", text),
                cl100k.encode_ordinary(text).len() as u64,
                "cl100k: {text}"
            );
        }
    }

    /// Random text from the characters where splitting is delicate
    /// (whitespace of every kind, case, digits, apostrophes, marks,
    /// punctuation, other scripts) counts as tiktoken counts it.
    #[test]
    fn random_text_counts_match_tiktoken() {
        const PARTS: &[&str] = &[
            " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\u{3000}", "\u{a0}", "a", "b", "Hello",
            "WORLD", "iT", "'s", "'LL", "'ve", "1", "23", "4567", "!", "?!", "...", "/", "-", "é",
            "e\u{301}", "\u{301}", "日本", "한", "🤖", "👍🏽", "_", "\"", "{", "}",
        ];
        let o200k = tiktoken_rs::o200k_base().unwrap();
        let cl100k = tiktoken_rs::cl100k_base().unwrap();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..2000 {
            let len = next(24);
            let text: String = (0..len).map(|_| PARTS[next(PARTS.len())]).collect();
            assert_eq!(
                count("gpt-4o", &text),
                o200k.encode_ordinary(&text).len() as u64,
                "o200k: {text:?}"
            );
            assert_eq!(
                count("gpt-4", &text),
                cl100k.encode_ordinary(&text).len() as u64,
                "cl100k: {text:?}"
            );
        }
    }

    #[test]
    fn chat_framing_is_counted() {
        let req = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "data:"}}]}
        ]});
        let n = count_chat("gpt-4o", &req);
        // 3 priming + 2 × (3 + role) + "You are helpful." (4) + "Hi" (1) + image (85)
        assert_eq!(n, 3 + (3 + 1) + (3 + 1) + 4 + 1 + IMAGE_TOKENS);
        assert_eq!(
            estimate_chat("gpt-4o", &req),
            (n, true),
            "short: counted whole"
        );
    }

    #[test]
    fn long_texts_are_estimated_past_the_budget() {
        let words = "the quick brown fox jumps over the lazy dog while gateways relay tokens ";
        let long = words.repeat(4 * COUNTED_AHEAD / words.len());
        let whole = count("gpt-4o", &long);
        let mut estimate = Estimate::new("gpt-4o");
        let guess = estimate.text(&long);
        assert!(!estimate.is_exact());
        assert!(
            guess.abs_diff(whole) * 100 <= whole,
            "{guess} against {whole}"
        );

        // The budget spans texts; a cut never splits a character.
        let mut estimate = Estimate::new("gpt-4o");
        let short = "Hello, world!";
        assert_eq!(estimate.text(short), count("gpt-4o", short));
        let wide = "日本語のテキスト。".repeat(COUNTED_AHEAD / 9);
        let guess = estimate.text(&wide);
        let whole = count("gpt-4o", &wide);
        assert!(
            guess.abs_diff(whole) * 20 <= whole,
            "{guess} against {whole}"
        );
        assert!(!estimate.is_exact());
        // Past the budget, texts are estimated at the rate counted.
        assert!(estimate.text(short) > 0);

        let req = json!({"messages": [{"role": "user", "content": long}]});
        let (guess, exact) = estimate_chat("gpt-4o", &req);
        assert!(!exact);
        let whole = count_chat("gpt-4o", &req);
        assert!(
            guess.abs_diff(whole) * 100 <= whole,
            "{guess} against {whole}"
        );
    }
}
