//! The OpenAI Chat Completions wire types: what its JSON bodies and stream
//! events look like (serde).

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireUsage {
    pub(super) prompt_tokens: Option<u64>,
    pub(super) completion_tokens: Option<u64>,
    pub(super) prompt_tokens_details: Option<PromptDetails>,
    pub(super) completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek reports cache hits here.
    pub(super) prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PromptDetails {
    pub(super) cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CompletionDetails {
    pub(super) reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct WireResponse {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) created: Option<u64>,
    #[serde(default)]
    pub(super) choices: Vec<WireChoice>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(super) struct WireChoice {
    #[serde(default)]
    pub(super) message: Option<Map<String, Value>>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    /// vLLM: the stop string that ended the answer.
    #[serde(default)]
    pub(super) stop_reason: Option<Value>,
}

#[derive(Serialize)]
pub(super) struct OutUsage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) total_tokens: u64,
    pub(super) prompt_tokens_details: OutPromptDetails,
    pub(super) completion_tokens_details: OutCompletionDetails,
}

#[derive(Serialize)]
pub(super) struct OutPromptDetails {
    pub(super) cached_tokens: u64,
}

#[derive(Serialize)]
pub(super) struct OutCompletionDetails {
    pub(super) reasoning_tokens: u64,
}

#[derive(Serialize)]
pub(super) struct OutToolCall<'a> {
    pub(super) id: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) function: OutFunction<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) extra_content: Option<ExtraContent<'a>>,
}

/// Gemini's own OpenAI-compatible carrier of a functionCall part's
/// `thoughtSignature`: `tool_calls[i].extra_content.google.thought_signature`.
#[derive(Serialize)]
pub(super) struct ExtraContent<'a> {
    pub(super) google: GoogleExtra<'a>,
}

#[derive(Serialize)]
pub(super) struct GoogleExtra<'a> {
    pub(super) thought_signature: &'a str,
}

#[derive(Serialize)]
pub(super) struct OutFunction<'a> {
    pub(super) name: &'a str,
    pub(super) arguments: &'a str,
}

/// One `reasoning_details` entry (OpenRouter convention).
#[derive(Serialize)]
pub(super) struct OutDetail<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    pub(super) format: &'static str,
    pub(super) index: usize,
}

#[derive(Serialize)]
pub(super) struct OutMessage<'a> {
    pub(super) role: &'static str,
    pub(super) content: Option<Cow<'a, str>>,
    pub(super) refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning_content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) reasoning_details: Vec<OutDetail<'a>>,
}

#[derive(Serialize)]
pub(super) struct OutChoice<'a> {
    pub(super) index: u32,
    pub(super) message: OutMessage<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: Option<&'a str>,
    /// The matched stop sequence (vLLM's extension; OpenAI SDKs ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stop_reason: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct OutResponse<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: [OutChoice<'a>; 1],
    pub(super) usage: OutUsage,
}

#[derive(Deserialize)]
pub(super) struct Chunk<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) model: Option<CowStr<'a>>,
    #[serde(default)]
    pub(super) created: Option<u64>,
    #[serde(borrow, default)]
    pub(super) choices: Vec<ChunkChoice<'a>>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct ChunkChoice<'a> {
    #[serde(default)]
    pub(super) index: u64,
    #[serde(borrow, default)]
    pub(super) delta: Option<ChunkDelta<'a>>,
    #[serde(borrow, default)]
    pub(super) finish_reason: Option<CowStr<'a>>,
    #[serde(default)]
    pub(super) stop_reason: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct ChunkDelta<'a> {
    #[serde(borrow, default)]
    pub(super) content: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) reasoning_content: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) reasoning: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) refusal: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) tool_calls: Option<Vec<ToolCallDelta<'a>>>,
    #[serde(default)]
    pub(super) reasoning_details: Option<Vec<Value>>,
}

#[derive(Deserialize)]
pub(super) struct ToolCallDelta<'a> {
    #[serde(default)]
    pub(super) index: Option<u64>,
    #[serde(borrow, default)]
    pub(super) id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub(super) struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    pub(super) arguments: Option<CowStr<'a>>,
}

#[derive(Serialize)]
pub(super) struct RoleDelta<'a> {
    pub(super) role: &'a str,
    pub(super) content: &'a str,
}

#[derive(Serialize)]
pub(super) struct ContentDelta<'a> {
    pub(super) content: &'a str,
}

#[derive(Serialize)]
pub(super) struct ReasoningDelta<'a> {
    pub(super) reasoning_content: &'a str,
}

#[derive(Serialize)]
pub(super) struct DetailsDelta<'a> {
    pub(super) reasoning_details: [OutDetail<'a>; 1],
}

#[derive(Serialize)]
pub(super) struct ToolDelta<'a> {
    pub(super) tool_calls: [ToolDeltaItem<'a>; 1],
}

#[derive(Serialize)]
pub(super) struct ToolDeltaItem<'a> {
    pub(super) index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) function: Option<ToolDeltaFunction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) extra_content: Option<ExtraContent<'a>>,
}

#[derive(Serialize)]
pub(super) struct ToolDeltaFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
    pub(super) arguments: &'a str,
}

#[derive(Serialize)]
pub(super) struct Empty {}

pub(super) fn extra_content(sig: Option<&str>) -> Option<ExtraContent<'_>> {
    sig.filter(|s| !s.is_empty()).map(|s| ExtraContent {
        google: GoogleExtra {
            thought_signature: s,
        },
    })
}
