//! STUB (IR-ready commit): wire types and conversions land in the next commits.

use super::{RequestOpts, ResponseOpts, StreamDecoder, StreamEncoder, TranslateError};
use crate::ir::{self, StreamEvent};
use crate::sse;
use serde_json::Value;

pub fn decode_request(body: &Value) -> Result<ir::Request, TranslateError> {
    let _ = body;
    Err(TranslateError::bad_request("not built yet", None))
}

pub fn encode_request(req: &ir::Request, opts: &RequestOpts) -> Result<Vec<u8>, TranslateError> {
    let _ = (req, opts);
    Err(TranslateError::bad_request("not built yet", None))
}

pub fn decode_response(body: &[u8]) -> Result<ir::Response, TranslateError> {
    let _ = body;
    Err(TranslateError::bad_request("not built yet", None))
}

pub fn encode_response(resp: &ir::Response, opts: &ResponseOpts) -> Vec<u8> {
    let _ = (resp, opts);
    Vec::new()
}

pub fn stream_event_usage(ev: sse::Event<'_>, usage: &mut ir::Usage) {
    let _ = (ev, usage);
}

#[derive(Default)]
pub struct StreamDecode {}

impl StreamDecoder for StreamDecode {
    fn event(&mut self, ev: sse::Event<'_>, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        let _ = (ev, sink);
    }
    fn end(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        let _ = sink;
    }
}

pub struct StreamEncode {}

impl StreamEncode {
    pub fn new(opts: &ResponseOpts) -> Self {
        let _ = opts;
        StreamEncode {}
    }
}

impl StreamEncoder for StreamEncode {
    fn event(&mut self, ev: &StreamEvent<'_>, out: &mut Vec<u8>) {
        let _ = (ev, out);
    }
}
