//! The Gemini wire types: what its JSON bodies and stream events look like
//! (serde).

use super::*;

/// One streamed `GenerateContentResponse`, serialized from borrowed fields.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChunkOut<'a> {
    pub(super) candidates: [CandidateOut<'a>; 1],
    pub(super) usage_metadata: UsageOut,
    pub(super) model_version: &'a str,
    pub(super) response_id: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CandidateOut<'a> {
    pub(super) content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) finish_reason: Option<&'a str>,
    pub(super) index: u32,
}

#[derive(serde::Serialize)]
pub(super) struct ContentOut<'a> {
    pub(super) role: &'static str,
    pub(super) parts: &'a [Value],
}

/// `usageMetadata` as [`usage_to_gemini`] writes it (zero cache/thoughts omitted).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageOut {
    pub(super) prompt_token_count: u64,
    pub(super) candidates_token_count: u64,
    pub(super) total_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) cached_content_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) thoughts_token_count: u64,
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}
