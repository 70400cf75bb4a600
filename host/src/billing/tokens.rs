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

static O200K: LazyLock<Option<Vocabulary>> = LazyLock::new(|| {
    read_out(
        tiktoken_rs::o200k_base(),
        tiktoken_rs::O200K_BASE_PAT_STR,
        199_998,
    )
});
static CL100K: LazyLock<Option<Vocabulary>> =
    LazyLock::new(|| read_out(tiktoken_rs::cl100k_base(), CL100K_PATTERN, 100_256));

/// `cl100k_base`'s pre-tokenizing pattern, as tiktoken publishes it.
const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// A compact copy of a tiktoken vocabulary of `size` ordinary tokens;
/// tiktoken's own is dropped.
fn read_out(
    encoder: anyhow::Result<tiktoken_rs::CoreBPE>,
    pattern: &str,
    size: u32,
) -> Option<Vocabulary> {
    let vocabulary = encoder.and_then(|bpe| Vocabulary::from_tiktoken(&bpe, pattern, size));
    match vocabulary {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "a tokenizer vocabulary could not be read: counts fall back to four bytes a token");
            None
        }
    }
}

/// Tokens for an image part when its size is unknown (OpenAI's low-detail
/// price; high-detail images cost more, and the upstream's report wins).
const IMAGE_TOKENS: u64 = 85;

/// Load `o200k_base` now rather than on the first request: it counts for
/// every current model. `cl100k_base` loads on the first call of a GPT-4 or
/// GPT-3.5 model.
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

/// Prompt tokens of a chat request: messages (text and image parts, tool
/// calls), plus the tool definitions.
pub fn count_chat(model: &str, request: &Value) -> u64 {
    let mut total = 3; // every reply is primed with <|start|>assistant<|message|>
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for message in messages {
            total += 3;
            if let Some(role) = message.get("role").and_then(Value::as_str) {
                total += count(model, role);
            }
            if let Some(name) = message.get("name").and_then(Value::as_str) {
                total += count(model, name) + 1;
            }
            total += content_tokens(model, message.get("content"));
            if let Some(calls) = message.get("tool_calls") {
                total += count(model, &calls.to_string());
            }
        }
    }
    for key in ["tools", "functions"] {
        if let Some(tools) = request.get(key).filter(|t| !t.is_null()) {
            total += count(model, &tools.to_string());
        }
    }
    total
}

fn content_tokens(model: &str, content: Option<&Value>) -> u64 {
    match content {
        Some(Value::String(s)) => count(model, s),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, |t| count(model, t)),
                Some("image_url") | Some("input_image") | Some("image") => IMAGE_TOKENS,
                _ => count(model, &part.to_string()),
            })
            .sum(),
        Some(Value::Null) | None => 0,
        Some(other) => count(model, &other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    }
}
