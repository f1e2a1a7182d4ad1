//! OpenAI Responses (`POST /v1/responses`) as a format of the internal model.
//!
//! Client side: request decode, response encode, and the typed-event stream
//! encoder ([`ResponsesEncoder`]). Upstream side (`api: responses`): request
//! encode, response decode, and the typed-event stream decoder.
//!
//! The stream encoder is a sync state machine over explicit state: each call
//! appends finished SSE frames (`event: <type>\ndata: {...}\n\n`) to `out`.
//! Event grammar (what the official `openai` SDK rebuilds the final response
//! from, so item ids / `output_index` / `content_index` must agree):
//! ```text
//! response.created, response.in_progress,
//! ( reasoning item:  output_item.added, (reasoning_summary_part.added,
//!                    reasoning_summary_text.delta*, reasoning_summary_text.done,
//!                    reasoning_summary_part.done)?, output_item.done
//! | message item:    output_item.added, content_part.added, output_text.delta*,
//!                    output_text.done, content_part.done, output_item.done
//! | function call:   output_item.added, function_call_arguments.delta*,
//!                    function_call_arguments.done, output_item.done )*
//! response.completed | response.incomplete | (error, response.failed)
//! ```
//! `sequence_number` starts at 0 and grows by one per event.

mod answer;
mod request;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use answer::*;
pub use answer::{answer_usage, decode_response, encode_response};
use request::*;
pub use request::{Namespaces, decode_request, encode_request, flat_name};
pub use stream::{StreamDecode, StreamEncode, TEXT_KEYS, write_error_event};
use wire::*;
pub use wire::{Outcome, RespUsage, ResponsesEncoder, response_id, response_object};

use super::dropped::{self, Dropped};
use super::json::{Path, idx as at, join};
use super::shared::{unwrap_signature, wrap_signature};
use super::{RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder, TranslateError};
use crate::ir::{self, Part, StreamEvent};
use crate::sse;
use crate::translate::Format;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
