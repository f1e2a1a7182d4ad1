//! What a client asked for (`Ask`), parsed once and shared by every
//! attempt: the body each target gets, converted for its format.

use super::peek::{Peeked, add_include_usage, splice_model};
use crate::providers::Op;
use crate::translate::{self, Dropped, Format, RequestOpts, ResponseOpts};
use bytes::Bytes;
use serde_json::Value;

/// What a client asked for, parsed once and shared by every attempt.
pub struct Ask {
    pub ingress: Format,
    pub op: Op,
    pub body: Bytes,
    pub peeked: Peeked,
    /// The client's query on Gemini routes (minus `key=`).
    pub gemini_query: Option<String>,
    pub resp_opts: ResponseOpts,
    /// Parsed lazily, once, for the first target needing a conversion.
    pub(crate) tree: Option<Value>,
    /// What the Gemini embeddings answer conversion needs from the request.
    pub(crate) embeddings: Option<translate::embeddings::EmbeddingsInfo>,
}

impl Ask {
    pub fn new(
        ingress: Format,
        op: Op,
        body: Bytes,
        peeked: Peeked,
        gemini_query: Option<String>,
    ) -> Ask {
        let resp_opts = ResponseOpts {
            client_model: peeked.model.clone().unwrap_or_default(),
            include_usage: peeked.include_usage.unwrap_or(false),
            gemini_sse: gemini_query
                .as_deref()
                .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse")),
            namespaces: Default::default(),
        };
        Ask {
            ingress,
            op,
            body,
            peeked,
            gemini_query,
            resp_opts,
            tree: None,
            embeddings: None,
        }
    }

    pub(crate) fn stream(&self) -> bool {
        matches!(
            self.op,
            Op::Chat { stream: true } | Op::Completions { stream: true }
        )
    }

    /// A counting body for a target speaking `to`, for upstream model
    /// `model`: the client's own (model mapped) when the formats match, else
    /// converted like a chat body and shaped for `to`'s counting endpoint.
    /// For a target without one (OpenAI) it is the body the estimate reads.
    pub(crate) fn count_body_for(
        &mut self,
        to: Format,
        model: &str,
        compatible: bool,
    ) -> Result<(Bytes, Dropped), translate::TranslateError> {
        if to == self.ingress {
            return match to {
                Format::Gemini => Ok((
                    translate::count::gemini_same_format(&self.body, model)?
                        .map_or_else(|| self.body.clone(), Bytes::from),
                    Dropped::default(),
                )),
                _ => self.body_for(to, model, compatible),
            };
        }
        if self.tree.is_none() {
            let v = parse(&self.body)?;
            self.tree = Some(translate::count::chat_request(self.ingress, v)?);
        }
        let tree = self.tree.as_ref().expect("parsed above");
        let opts = RequestOpts {
            model: model.to_string(),
            stream: false,
        };
        let chat = if compatible {
            translate::convert_request_compatible(self.ingress, to, tree, &opts)?
        } else {
            translate::convert_request(self.ingress, to, tree, &opts)?
        };
        let dropped = chat.dropped;
        let chat: Value = serde_json::from_slice(&chat.body).unwrap_or_default();
        let body = translate::count::request_for(to, chat, model);
        Ok((
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            dropped,
        ))
    }

    /// The body for a target speaking `to`, for upstream model `model`, with
    /// the client paths its conversion left out (none on same-format routes).
    /// `compatible`: an openai-compatible server (`max_tokens`, not `max_completion_tokens`).
    pub(crate) fn body_for(
        &mut self,
        to: Format,
        model: &str,
        compatible: bool,
    ) -> Result<(Bytes, Dropped), translate::TranslateError> {
        if to == self.ingress || self.op == Op::Embeddings {
            return self.same_body(to, model).map(|b| (b, Dropped::default()));
        }
        let from = self.ingress;
        let opts = RequestOpts {
            model: model.to_string(),
            stream: self.stream(),
        };
        let tree = self.tree()?;
        let c = if compatible {
            translate::convert_request_compatible(from, to, tree, &opts)
        } else {
            translate::convert_request(from, to, tree, &opts)
        }?;
        Ok((Bytes::from(c.body), c.dropped))
    }

    /// The body for a target of the client's own format (or embeddings).
    pub(crate) fn same_body(
        &mut self,
        to: Format,
        model: &str,
    ) -> Result<Bytes, translate::TranslateError> {
        // aigate counts tokens of every answer: an OpenAI Chat stream is asked
        // for its usage chunk, which goes back only to clients that asked.
        let add_usage =
            to == Format::OpenAiChat && self.stream() && self.peeked.include_usage.is_none();
        if self.op == Op::Embeddings && to == Format::Gemini {
            let tree = parse(&self.body)?;
            let (body, mut info) = translate::embeddings::openai_to_gemini_request(&tree, model)?;
            info.client_model = self.peeked.model.clone().unwrap_or_default();
            self.embeddings = Some(info);
            return Ok(Bytes::from(body));
        }
        if to == self.ingress
            && self.peeked.models.is_none()
            && self.peeked.include_usage != Some(false)
        {
            let body = match self.peeked.model_span {
                Some(span) if self.peeked.model.as_deref() != Some(model) => {
                    Bytes::from(splice_model(&self.body, span, model))
                }
                _ => self.body.clone(),
            };
            return Ok(if add_usage {
                Bytes::from(add_include_usage(body.to_vec()))
            } else {
                body
            });
        }
        let v = self.tree()?;
        // Same format from a `models` list, or with `stream_options` to
        // amend: the body needs its `model` and the usage request.
        let mut v = v.clone();
        v["model"] = Value::String(model.to_string());
        if to == Format::OpenAiChat && self.stream() {
            v["stream_options"]["include_usage"] = Value::Bool(true);
        }
        Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
    }

    /// The client body parsed (once), without aigate's own `models` field.
    pub(crate) fn tree(&mut self) -> Result<&Value, translate::TranslateError> {
        if self.tree.is_none() {
            let v = parse(&self.body)?;
            if self.ingress == Format::OpenAiChat {
                self.resp_opts.include_usage = v
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            }
            if self.ingress == Format::OpenAiResponses {
                self.resp_opts.namespaces = translate::openai_responses::Namespaces::of_request(&v);
            }
            let mut v = v;
            // The fallback list is aigate's; no upstream knows the field.
            if let Some(o) = v.as_object_mut() {
                o.remove("models");
            }
            self.tree = Some(v);
        }
        Ok(self.tree.as_ref().expect("parsed above"))
    }
}

/// The client body as JSON; a body that is not is the client's error.
fn parse(body: &[u8]) -> Result<Value, translate::TranslateError> {
    serde_json::from_slice(body).map_err(|e| {
        translate::TranslateError::bad_request(format!("request body is not valid JSON: {e}"), None)
    })
}
