//! The Anthropic Messages wire types: what its JSON bodies and stream events
//! look like (serde).

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireUsage {
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) cache_creation_input_tokens: Option<u64>,
    pub(super) cache_read_input_tokens: Option<u64>,
    pub(super) output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OutputDetails {
    pub(super) thinking_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct WireMessage {
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) model: String,
    /// Required: an answer without content blocks is not an answer.
    pub(super) content: Vec<Value>,
    #[serde(default)]
    pub(super) stop_reason: Option<String>,
    #[serde(default)]
    pub(super) stop_sequence: Option<String>,
    #[serde(default)]
    pub(super) usage: WireUsage,
}

#[derive(Serialize)]
pub(super) struct OutUsage {
    pub(super) input_tokens: u64,
    pub(super) cache_creation_input_tokens: u64,
    pub(super) cache_read_input_tokens: u64,
    pub(super) output_tokens: u64,
    /// Only when some output was reasoning: the field is new, and an answer
    /// without thinking reads as it always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) output_tokens_details: Option<OutDetails>,
}

/// `usage.output_tokens_details`: the thinking share of `output_tokens`.
#[derive(Serialize)]
pub(super) struct OutDetails {
    pub(super) thinking_tokens: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum ToolInput<'a> {
    Raw(&'a RawValue),
    Value(Value),
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum OutBlock<'a> {
    Text {
        #[serde(rename = "type")]
        kind: &'static str,
        text: &'a str,
    },
    Thinking {
        #[serde(rename = "type")]
        kind: &'static str,
        thinking: &'a str,
        signature: Cow<'a, str>,
    },
    Redacted {
        #[serde(rename = "type")]
        kind: &'static str,
        data: &'a str,
    },
    ToolUse {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        name: &'a str,
        input: ToolInput<'a>,
    },
    Raw(&'a Value),
}

#[derive(Serialize)]
pub(super) struct OutMessage<'a> {
    pub(super) id: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) role: &'static str,
    pub(super) model: &'a str,
    pub(super) content: Vec<OutBlock<'a>>,
    pub(super) stop_reason: Option<&'a str>,
    pub(super) stop_sequence: Option<&'a str>,
    pub(super) usage: OutUsage,
}

#[derive(Deserialize)]
pub(super) struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: CowStr<'a>,
    #[serde(default)]
    pub(super) index: Option<u64>,
    #[serde(borrow, default)]
    pub(super) message: Option<StartMessage<'a>>,
    #[serde(borrow, default)]
    pub(super) content_block: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) delta: Option<WireDelta<'a>>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct StartMessage<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) model: Option<CowStr<'a>>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(super) struct WireDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(super) kind: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) text: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) thinking: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) signature: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) partial_json: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) stop_reason: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) stop_sequence: Option<CowStr<'a>>,
}

#[derive(Deserialize)]
pub(super) struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: CowStr<'a>,
    #[serde(borrow, default)]
    pub(super) text: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) thinking: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) signature: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) data: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) name: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) input: Option<&'a RawValue>,
}
