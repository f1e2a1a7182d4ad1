//! Looks at raw stream bytes without parsing them, for same-format streams
//! that pass through: how much generated text they carry (each format names
//! its text fields, `TEXT_KEYS` in its stream.rs) and where usage or an error
//! may be.

use super::Format;

/// Characters of generated text (answer, reasoning, tool arguments) in raw
/// stream bytes of `format`: the string values of the fields deltas carry
/// (each format's `TEXT_KEYS`). An
/// estimate for streams without usage (a field split across chunks is missed).
pub fn text_chars(format: Format, data: &[u8]) -> u64 {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Searchers built once: this runs over every byte of a stream until it
    // shows usage (`memmem::find` would build one per call).
    type Keys = LazyLock<Vec<Finder<'static>>>;
    fn keys(k: &[&'static [u8]]) -> Vec<Finder<'static>> {
        let b = memchr::memmem::FinderBuilder::new();
        k.iter()
            .map(|k| b.build_forward_with_ranker(JsonRank, *k))
            .collect()
    }
    static CHAT: Keys = LazyLock::new(|| keys(super::openai_chat::TEXT_KEYS));
    static RESPONSES: Keys = LazyLock::new(|| keys(super::openai_responses::TEXT_KEYS));
    static ANTHROPIC: Keys = LazyLock::new(|| keys(super::anthropic::TEXT_KEYS));
    static GEMINI: Keys = LazyLock::new(|| keys(super::gemini::TEXT_KEYS));
    let keys: &[Finder<'static>] = match format {
        Format::OpenAiChat => &CHAT,
        Format::OpenAiResponses => &RESPONSES,
        Format::Anthropic => &ANTHROPIC,
        Format::Gemini => &GEMINI,
    };
    let mut n = 0;
    for (key, at) in keys
        .iter()
        .flat_map(|k| k.find_iter(data).map(move |at| (k, at)))
    {
        let mut i = at + key.needle().len();
        while data.get(i) == Some(&b' ') {
            i += 1;
        }
        if data.get(i) != Some(&b'"') {
            continue;
        }
        i += 1;
        while let Some(&b) = data.get(i) {
            match b {
                b'"' => break,
                b'\\' => {
                    n += 1;
                    i += if data.get(i + 1) == Some(&b'u') { 6 } else { 2 };
                    continue;
                }
                // UTF-8 continuation bytes are part of the previous char.
                b if b & 0xC0 == 0x80 => {}
                _ => n += 1,
            }
            i += 1;
        }
    }
    n
}

/// Where the first usage object (any format's: `"usage": {`, Gemini's
/// `usageMetadata`; not OpenAI's `"usage":null`) or error mention in `data` is. Runs over
/// every passthrough byte, so the searchers are built once (`memmem::find`
/// builds one per call, which cost more than the rest of the passthrough).
pub fn usage_or_error_at(data: &[u8]) -> Option<usize> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"usage"));
    static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"error"));
    let usage = USAGE.find_iter(data).find(|&at| {
        let rest = &data[at + 5..];
        if rest.starts_with(b"Metadata") {
            return true;
        }
        // `"usage": {` with any spacing; `null` and bare words do not count.
        let mut it = rest
            .iter()
            .skip_while(|b| **b == b'"')
            .skip_while(|b| b.is_ascii_whitespace());
        it.next() == Some(&b':') && it.find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    });
    let error = ERROR.find(&data[..usage.unwrap_or(data.len())]);
    error.or(usage)
}

/// Byte ranks for searching JSON event streams. memchr's default ranks
/// (for text) take `"` and `:` for rare bytes, so a search for `content":`
/// stopped at every key of every event to compare; here JSON punctuation
/// is the most common, then the letters most common in English.
struct JsonRank;

impl memchr::arch::all::packedpair::HeuristicFrequencyRank for JsonRank {
    fn rank(&self, b: u8) -> u8 {
        match b {
            b'"' | b':' | b',' | b'{' | b'}' | b'[' | b']' | b' ' | b'_' => 255,
            b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 200,
            b'h' | b'l' | b'd' | b'c' | b'u' | b'm' => 150,
            b'a'..=b'z' | b'0'..=b'9' => 100,
            _ => 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_chars_counts_generated_text_per_format() {
        let chat = br#"data: {"choices":[{"delta":{"content":"h\u00e9llo \"x\""}}]}

data: {"choices":[{"delta":{"reasoning_content":"ab","tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]},"refusal":null}]}

"#;
        // "héllo \"x\"" is 9 chars, "ab" 2, `{"a":1}` 7.
        assert_eq!(text_chars(Format::OpenAiChat, chat), 18);
        let resp = br#"event: response.output_text.delta
data: {"type":"response.output_text.delta","delta":"hi there"}

event: response.output_text.done
data: {"type":"response.output_text.done","text":"hi there"}

"#;
        assert_eq!(text_chars(Format::OpenAiResponses, resp), 8);
        let an =
            r#"data: {"type":"content_block_delta","delta":{"type":"text_delta","text": "Grüße"}}"#;
        assert_eq!(text_chars(Format::Anthropic, an.as_bytes()), 5);
        assert_eq!(
            text_chars(Format::Gemini, br#"{"parts":[{"text":"abc"}]}"#),
            3
        );
    }
}
