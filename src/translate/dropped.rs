//! The drop-and-name rule (SPEC "Client-facing endpoints"): a field the
//! target's format cannot express, but whose loss does not change what the
//! answer means (sampling hints, request metadata, cache and tool-loading
//! hints), is left out of the upstream body and named here. The proxy sends
//! the names as `x-aigate-dropped` and writes them in the access line. A field
//! whose loss would change the answer stays a 400 naming it (the encoders'
//! `inexpressible`). README "Format conversion" has the table per format.
//!
//! Encoders decide (only they know the target); these helpers keep the names
//! the client's own paths, whatever the target.

use super::Format;
use crate::ir;
use serde_json::{Map, Value};

/// Client paths a conversion left out, in the order met, each once.
/// Empty (no allocation) for every request that needs no drop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped(Vec<String>);

impl Dropped {
    pub fn push(&mut self, path: impl AsRef<str> + Into<String>) {
        if !self.0.iter().any(|p| p == path.as_ref()) {
            self.0.push(path.into());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn paths(&self) -> &[String] {
        &self.0
    }

    /// The `x-aigate-dropped` value: paths joined by commas.
    pub fn header_value(&self) -> String {
        self.0.join(",")
    }
}

/// A converted request body and what the conversion left out of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    pub body: Vec<u8>,
    pub dropped: Dropped,
}

/// IR sampling field `name` as a client of `from` spells it.
pub fn sampling_path(from: Format, name: &'static str) -> &'static str {
    if from != Format::Gemini {
        return name;
    }
    match name {
        "top_k" => "generationConfig.topK",
        "seed" => "generationConfig.seed",
        "frequency_penalty" => "generationConfig.frequencyPenalty",
        "presence_penalty" => "generationConfig.presencePenalty",
        other => other,
    }
}

/// What every encoder of `to` names the same way: the other format's hints,
/// the end user (when `to` has no slot for it: `user_slot` false),
/// `cache_control` markers and Anthropic tool hints (kept only by Anthropic).
pub fn name_common(req: &ir::Request, to: Format, user_slot: bool, out: &mut Dropped) {
    let from = req.extra.format;
    if from == to {
        return;
    }
    for (k, v) in &req.extra.hints {
        let mapped = user_slot && k == "safety_identifier" && v.as_str() == req.user.as_deref();
        if !asks_nothing(k, v) && !mapped {
            out.push(k.as_str());
        }
    }
    if !user_slot && req.user.is_some() {
        out.push(req.extra.user_from);
    }
    if to != Format::Anthropic {
        for p in &req.extra.cache_paths {
            out.push(p.as_str());
        }
        for (i, t) in req.tools.iter().enumerate() {
            if let ir::Tool::Function(f) = t {
                for k in f.hints.keys() {
                    out.push(format!("tools[{i}].{k}"));
                }
            }
        }
    }
}

/// A hint whose value asks for what every target does anyway: leaving it
/// out loses nothing, so it is not named. `stream_options` is the gateway's
/// own business (it always asks for usage and gives it back as asked).
fn asks_nothing(k: &str, v: &Value) -> bool {
    match k {
        "stream_options" => true,
        "logprobs" | "store" | "background" => v == &Value::Bool(false),
        "modalities" => v.as_array().is_some_and(|a| a.iter().all(|m| m == "text")),
        "truncation" => v == "disabled",
        _ => false,
    }
}

/// An Anthropic tool-search tool (`tool_search_tool_regex_*`, `..._bm25_*`):
/// it only finds tools marked `defer_loading`, which every other target gets
/// in full, so there it has nothing to find and is left out (and named).
pub fn is_tool_search(r: &ir::Raw) -> bool {
    r.format == Format::Anthropic && r.kind().starts_with("tool_search_tool_")
}

/// Client paths of the `cache_control` markers of an Anthropic or OpenAI
/// Chat body: on system blocks, tools, messages, content blocks and the
/// blocks inside tool results. Allocates only for markers found.
pub fn cache_control_paths(m: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let marked = |v: &Value| v.get("cache_control").is_some_and(|c| !c.is_null());
    for key in ["system", "tools"] {
        for (i, b) in array(m.get(key)).iter().enumerate() {
            if marked(b) {
                out.push(format!("{key}[{i}].cache_control"));
            }
        }
    }
    for (i, msg) in array(m.get("messages")).iter().enumerate() {
        if marked(msg) {
            out.push(format!("messages[{i}].cache_control"));
        }
        for (j, b) in array(msg.get("content")).iter().enumerate() {
            if marked(b) {
                out.push(format!("messages[{i}].content[{j}].cache_control"));
            }
            for (k, inner) in array(b.get("content")).iter().enumerate() {
                if marked(inner) {
                    out.push(format!(
                        "messages[{i}].content[{j}].content[{k}].cache_control"
                    ));
                }
            }
        }
    }
    out
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_named_once_in_order() {
        let mut d = Dropped::default();
        assert!(d.is_empty());
        d.push("top_k");
        d.push(String::from("metadata"));
        d.push("top_k");
        assert_eq!(d.paths(), ["top_k", "metadata"]);
        assert_eq!(d.header_value(), "top_k,metadata");
    }

    #[test]
    fn cache_control_paths_follow_the_client_body() {
        let body = json!({
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "t", "input_schema": {"properties": {"cache_control": {}}}, "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "user", "cache_control": {"type": "ephemeral"}, "content": [
                    {"type": "text", "text": "y"},
                    {"type": "tool_result", "tool_use_id": "c", "content": [{"type": "text", "text": "r", "cache_control": {"type": "ephemeral"}}]},
                    {"type": "text", "text": "z", "cache_control": null}
                ]}
            ]
        });
        assert_eq!(
            cache_control_paths(body.as_object().unwrap()),
            [
                "system[1].cache_control",
                "tools[0].cache_control",
                "messages[1].cache_control",
                "messages[1].content[1].content[0].cache_control"
            ]
        );
    }

    #[test]
    fn defaults_are_not_named() {
        for (k, v) in [
            ("store", json!(false)),
            ("logprobs", json!(false)),
            ("modalities", json!(["text"])),
            ("truncation", json!("disabled")),
            ("stream_options", json!({"include_usage": true})),
        ] {
            assert!(asks_nothing(k, &v), "{k}");
        }
        for (k, v) in [
            ("store", json!(true)),
            ("metadata", json!({})),
            ("truncation", json!("auto")),
        ] {
            assert!(!asks_nothing(k, &v), "{k}");
        }
    }
}

/// The README tables, one test per client format: each row class
/// (converted, mapped, dropped and named, refused) on request shapes the
/// real clients send.
#[cfg(test)]
mod rule {
    use crate::translate::{Format, RequestOpts, TranslateError, convert_request};
    use serde_json::{Value, json};

    const OA: Format = Format::OpenAiChat;
    const RS: Format = Format::OpenAiResponses;
    const AN: Format = Format::Anthropic;
    const GE: Format = Format::Gemini;

    /// (upstream body, dropped paths).
    fn conv(from: Format, to: Format, body: &Value) -> (Value, Vec<String>) {
        let opts = RequestOpts {
            model: "up".into(),
            stream: false,
        };
        let c = convert_request(from, to, body, &opts)
            .unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e:?}"));
        (
            serde_json::from_slice(&c.body).unwrap(),
            c.dropped.paths().to_vec(),
        )
    }

    fn refused(from: Format, to: Format, body: &Value) -> TranslateError {
        let opts = RequestOpts {
            model: "up".into(),
            stream: false,
        };
        let e = convert_request(from, to, body, &opts).expect_err("a 400");
        assert_eq!(e.status, 400, "{}", e.message);
        e
    }

    #[test]
    fn openai_chat_clients() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        // Converted and mapped: nothing named.
        let mut b = base.clone();
        b["temperature"] = json!(0.5);
        b["user"] = json!("u-1");
        let (out, d) = conv(OA, AN, &b);
        assert_eq!((out["temperature"].clone(), d.len()), (json!(0.5), 0));
        assert_eq!(out["metadata"]["user_id"], "u-1");
        let (out, d) = conv(OA, RS, &b);
        assert_eq!((out["user"].clone(), d.len()), (json!("u-1"), 0));
        // Dropped and named, per target.
        let mut b = base.clone();
        b["top_k"] = json!(40);
        b["seed"] = json!(7);
        b["store"] = json!(true);
        b["metadata"] = json!({"k": "v"});
        b["prompt_cache_key"] = json!("pc");
        b["verbosity"] = json!("low");
        b["stream_options"] = json!({"include_usage": true});
        b["logprobs"] = json!(false);
        b["messages"][0]["content"] =
            json!([{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]);
        let (out, d) = conv(OA, AN, &b);
        assert_eq!(out["top_k"], 40);
        assert_eq!(
            out["messages"][0]["content"][0]["cache_control"]["type"],
            "ephemeral"
        );
        assert_eq!(
            d,
            ["metadata", "prompt_cache_key", "store", "verbosity", "seed"]
        );
        for k in ["seed", "store", "prompt_cache_key", "verbosity"] {
            assert!(out.get(k).is_none(), "{k}");
        }
        let (out, d) = conv(OA, RS, &b);
        assert_eq!(
            d,
            [
                "metadata",
                "prompt_cache_key",
                "store",
                "verbosity",
                "messages[0].content[0].cache_control",
                "top_k",
                "seed"
            ]
        );
        assert!(out.get("top_k").is_none() && out["store"] == false);
        let mut g = base.clone();
        g["safety_identifier"] = json!("s-1");
        let (out, d) = conv(OA, GE, &g);
        assert_eq!(d, ["safety_identifier"]);
        assert!(!out.to_string().contains("s-1"));
        // Mapped, not named, where the target has a slot.
        assert_eq!(conv(OA, AN, &g).1, Vec::<String>::new());
        // Refused: the answer would change.
        for (k, v, to) in [
            ("n", json!(2), AN),
            ("logprobs", json!(true), GE),
            ("stop", json!(["x"]), RS),
            ("logit_bias", json!({"1": 5}), AN),
        ] {
            let mut b = base.clone();
            b[k] = v;
            assert_eq!(refused(OA, to, &b).param.as_deref(), Some(k));
        }
    }

    /// What Codex CLI (`wire_api = "responses"`) sends on every turn.
    fn codex() -> Value {
        json!({
            "model": "gpt-5-codex",
            "instructions": "You are Codex.",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}],
            "tools": [{"type": "function", "name": "shell", "description": "run", "strict": false,
                       "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}}],
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": false,
            "stream": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "019a-session",
            "client_metadata": {"x-codex-installation-id": "abc"},
            "text": {"verbosity": "low"}
        })
    }

    #[test]
    fn openai_responses_clients() {
        let named = [
            "client_metadata",
            "include",
            "prompt_cache_key",
            "text.verbosity",
        ];
        for to in [OA, AN, GE] {
            let (out, d) = conv(RS, to, &codex());
            assert_eq!(d, named, "{to:?}");
            let text = out.to_string();
            for gone in [
                "client_metadata",
                "prompt_cache_key",
                "019a-session",
                "encrypted_content",
                "verbosity",
            ] {
                assert!(!text.contains(gone), "{to:?}: {gone} in {text}");
            }
            assert!(
                text.contains("shell"),
                "{to:?}: the function tool is converted"
            );
        }
        let (out, _) = conv(RS, OA, &codex());
        assert_eq!(
            (
                out["reasoning_effort"].clone(),
                out["parallel_tool_calls"].clone()
            ),
            (json!("medium"), json!(false))
        );
        // store: true is named; user is mapped to Anthropic, named for Gemini.
        let mut b = codex();
        b["store"] = json!(true);
        b["user"] = json!("u-9");
        assert!(conv(RS, AN, &b).1.contains(&"store".to_string()));
        assert_eq!(conv(RS, AN, &b).0["metadata"]["user_id"], "u-9");
        assert!(conv(RS, GE, &b).1.contains(&"user".to_string()));
        // Refused: tools only OpenAI runs or shapes, and stored state.
        for (tool, i) in [
            (json!({"type": "local_shell"}), "tools[1]"),
            (
                json!({"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}),
                "tools[1]",
            ),
        ] {
            let mut b = codex();
            b["tools"].as_array_mut().unwrap().push(tool);
            for to in [OA, AN, GE] {
                assert_eq!(refused(RS, to, &b).param.as_deref(), Some(i), "{to:?}");
            }
        }
        let mut b = codex();
        b["previous_response_id"] = json!("resp_1");
        assert_eq!(
            refused(RS, AN, &b).param.as_deref(),
            Some("previous_response_id")
        );
    }

    /// Codex's web search tool: Anthropic's own server tool on an Anthropic
    /// target; refused where no server tool searches (an answer without the
    /// search would be another answer).
    #[test]
    fn openai_responses_web_search() {
        let mut b = codex();
        b["tools"].as_array_mut().unwrap().push(json!({
            "type": "web_search", "external_web_access": false, "search_context_size": "low",
            "filters": {"allowed_domains": ["docs.rs"]},
            "user_location": {"type": "approximate", "country": "DE", "city": "Berlin"}
        }));
        let (out, d) = conv(RS, AN, &b);
        assert_eq!(
            out["tools"][1],
            json!({"type": "web_search_20250305", "name": "web_search", "allowed_domains": ["docs.rs"],
                   "user_location": {"type": "approximate", "country": "DE", "city": "Berlin"}})
        );
        assert!(
            d.ends_with(&[
                "tools[1].external_web_access".to_string(),
                "tools[1].search_context_size".to_string()
            ]),
            "{d:?}"
        );
        // Live search asked for (the default): nothing to name.
        let mut b = codex();
        b["tools"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "web_search_preview", "external_web_access": true}));
        let (out, d) = conv(RS, AN, &b);
        assert_eq!(out["tools"][1]["type"], "web_search_20250305");
        assert!(!d.iter().any(|p| p.starts_with("tools")), "{d:?}");
        for to in [OA, GE] {
            let e = refused(RS, to, &b);
            assert_eq!(e.param.as_deref(), Some("tools[1]"), "{to:?}");
            assert!(
                e.message.contains("web_search_preview"),
                "{to:?}: {}",
                e.message
            );
        }
        // A web search option Anthropic has no field for and that is no hint.
        b["tools"][1]["filters"] = json!({"blocked_domains": ["x.com"]});
        assert_eq!(
            refused(RS, AN, &b).param.as_deref(),
            Some("tools[1].filters.blocked_domains")
        );
    }

    /// What Claude Code 2.1 sends: cache breakpoints, a deferred tool behind
    /// tool search, context management, thinking, its user id.
    fn claude_code() -> Value {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "system": [
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Env.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}}
            ]}],
            "tools": [
                {"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
                 "input_examples": [{"command": "ls"}], "eager_input_streaming": true},
                {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
                {"name": "mcp__db__query", "description": "query", "defer_loading": true,
                 "input_schema": {"type": "object", "properties": {"sql": {"type": "string"}}},
                 "cache_control": {"type": "ephemeral"}}
            ],
            "metadata": {"user_id": "user_abc_account__session_1"},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "thinking": {"type": "enabled", "budget_tokens": 10000},
            "top_k": 5,
            "stream": true
        })
    }

    #[test]
    fn anthropic_clients() {
        for to in [OA, RS, GE] {
            let (out, d) = conv(AN, to, &claude_code());
            let mut want = vec![
                "context_management",
                "system[1].cache_control",
                "tools[2].cache_control",
                "messages[0].content[0].cache_control",
                "tools[0].eager_input_streaming",
                "tools[0].input_examples",
                "tools[2].defer_loading",
                "tools[1]",
            ];
            if to == GE {
                want.push("metadata.user_id");
            } else {
                want.push("top_k");
            }
            let mut got = d.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{to:?}");
            let text = out.to_string();
            for gone in [
                "cache_control",
                "defer_loading",
                "input_examples",
                "tool_search",
                "context_management",
                "eager",
            ] {
                assert!(!text.contains(gone), "{to:?}: {gone} in {text}");
            }
            // The deferred tool is sent in full.
            assert!(
                text.contains("mcp__db__query") && text.contains("sql"),
                "{to:?}"
            );
        }
        // Converted and mapped.
        let (out, _) = conv(AN, GE, &claude_code());
        assert_eq!(out["generationConfig"]["topK"], 5);
        assert_eq!(
            out["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            10000
        );
        let (out, d) = conv(AN, OA, &claude_code());
        assert_eq!(out["user"], "user_abc_account__session_1");
        assert_eq!(out["reasoning_effort"], "high");
        assert!(!d.iter().any(|p| p.starts_with("metadata")));
        assert!(
            conv(AN, GE, &claude_code())
                .1
                .contains(&"metadata.user_id".to_string())
        );
        // Refused: a server tool only Anthropic runs, and a container.
        let mut b = claude_code();
        b["tools"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "web_search_20250305", "name": "web_search"}));
        for to in [OA, RS, GE] {
            assert_eq!(refused(AN, to, &b).param.as_deref(), Some("tools[3]"));
        }
        let mut b = claude_code();
        b["container"] = json!("c-1");
        assert_eq!(refused(AN, OA, &b).param.as_deref(), Some("container"));
    }

    /// Claude Code 2.1's mid-conversation system message (beta
    /// `mid-conversation-system-2026-04-07`) and `output_config.effort`.
    fn claude_code_turn() -> Value {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "system": "You are Claude Code.",
            "messages": [
                {"role": "user", "content": "read the note"},
                {"role": "system", "content": "Available agent types: claude."},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/n.txt"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "code word: amber"}]},
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
            ],
            "tools": [{"name": "Read", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "stream": true
        })
    }

    #[test]
    fn anthropic_mid_conversation_system_messages() {
        let b = claude_code_turn();
        // OpenAI Chat: a system message at its place.
        let (out, d) = conv(AN, OA, &b);
        assert!(d.is_empty(), "{d:?}");
        let roles: Vec<&str> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["system", "user", "system", "assistant", "tool", "system"]
        );
        assert_eq!(
            out["messages"][2]["content"],
            "Available agent types: claude."
        );
        assert_eq!(out["messages"][5]["content"], "Be brief.");
        // Responses: a system input item at its place.
        let (out, _) = conv(AN, RS, &b);
        let items = out["input"].as_array().unwrap();
        assert_eq!(out["instructions"], "You are Claude Code.");
        assert_eq!(
            (items[0]["role"].clone(), items[1]["role"].clone()),
            (json!("user"), json!("system"))
        );
        assert_eq!(
            items[1]["content"][0]["text"],
            "Available agent types: claude."
        );
        assert_eq!(items[2]["type"], "function_call");
        assert_eq!(items.last().unwrap()["role"], "system");
        // Gemini has one system instruction: the text joins it, in order.
        let (out, _) = conv(AN, GE, &b);
        let sys: Vec<&str> = out["systemInstruction"]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            sys,
            [
                "You are Claude Code.",
                "Available agent types: claude.",
                "Be brief."
            ]
        );
        assert!(!out["contents"].to_string().contains("Be brief"));
        // Anthropic from the IR: the client's own format keeps it in place.
        let (out, _) = conv(AN, AN, &b);
        assert_eq!(out["messages"][1]["role"], "system");
        assert_eq!(out["output_config"], json!({"effort": "high"}));
        assert_eq!(out["thinking"], json!({"type": "adaptive"}));
        // Only text in a system message.
        let mut bad = claude_code_turn();
        bad["messages"][1]["content"] =
            json!([{"type": "image", "source": {"type": "url", "url": "http://x/a.png"}}]);
        assert_eq!(
            refused(AN, OA, &bad).param.as_deref(),
            Some("messages[1].content[0]")
        );
        let mut bad = claude_code_turn();
        bad["messages"][1]["role"] = json!("tool");
        let e = refused(AN, OA, &bad);
        assert_eq!(e.param.as_deref(), Some("messages[1].role"));
    }

    #[test]
    fn anthropic_output_config_effort() {
        // Each documented value (low, medium, high, xhigh, max).
        for (effort, budget) in [
            ("low", 1024),
            ("medium", 4096),
            ("high", 16384),
            ("xhigh", 32768),
            ("max", 32768),
        ] {
            let mut b = claude_code_turn();
            b["output_config"]["effort"] = json!(effort);
            let (out, d) = conv(AN, OA, &b);
            assert_eq!(
                (out["reasoning_effort"].as_str(), d.len()),
                (Some(effort), 0)
            );
            let (out, _) = conv(AN, RS, &b);
            assert_eq!(out["reasoning"]["effort"], effort);
            let (out, _) = conv(AN, GE, &b);
            assert_eq!(
                out["generationConfig"]["thinkingConfig"]["thinkingBudget"], budget,
                "{effort}"
            );
        }
        // Effort without thinking: still the effort; an Anthropic request
        // keeps it without turning thinking on.
        let mut b = claude_code_turn();
        b.as_object_mut().unwrap().remove("thinking");
        assert_eq!(conv(AN, OA, &b).0["reasoning_effort"], "high");
        let (out, _) = conv(AN, AN, &b);
        assert!(out.get("thinking").is_none(), "{out}");
        assert_eq!(out["output_config"], json!({"effort": "high"}));
        // Thinking disabled: no reasoning to set, the effort is named.
        b["thinking"] = json!({"type": "disabled"});
        let (out, d) = conv(AN, OA, &b);
        assert!(out.get("reasoning_effort").is_none());
        assert_eq!(d, ["output_config.effort"]);
        // output_config.format is the response format, beside the effort.
        let mut b = claude_code_turn();
        b["thinking"] = json!({"type": "disabled"});
        b["output_config"] = json!({"effort": "low", "format": {"type": "json_schema",
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}});
        let (out, _) = conv(AN, OA, &b);
        assert_eq!(out["response_format"]["type"], "json_schema");
        assert_eq!(
            out["response_format"]["json_schema"]["schema"]["properties"]["n"]["type"],
            "integer"
        );
        // Anything else in output_config is refused by name.
        let mut b = claude_code_turn();
        b["output_config"]["task_budget"] = json!({"total": 100});
        assert_eq!(
            refused(AN, GE, &b).param.as_deref(),
            Some("output_config.task_budget")
        );
        let (out, _) = conv(AN, AN, &b);
        assert_eq!(
            out["output_config"],
            json!({"effort": "high", "task_budget": {"total": 100}})
        );
    }

    /// What Gemini CLI 0.61 sends (its default model config has `topK`,
    /// a float in google-genai's types).
    fn gemini_cli() -> Value {
        json!({
            "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
            "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]},
            "tools": [{"functionDeclarations": [{"name": "read_file", "description": "read",
                        "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}]}],
            "generationConfig": {"temperature": 0, "topP": 1, "topK": 64.0,
                                  "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 8192}}
        })
    }

    #[test]
    fn gemini_clients() {
        for to in [OA, RS] {
            let (out, d) = conv(GE, to, &gemini_cli());
            assert_eq!(d, ["generationConfig.topK"], "{to:?}");
            assert!(out.get("top_k").is_none() && out.get("topK").is_none());
            assert_eq!(out["temperature"], 0.0);
        }
        let (out, d) = conv(GE, AN, &gemini_cli());
        assert_eq!((out["top_k"].clone(), d.len()), (json!(64), 0));
        let mut b = gemini_cli();
        b["labels"] = json!({"team": "x"});
        b["generationConfig"]["seed"] = json!(3);
        let (out, d) = conv(GE, AN, &b);
        assert_eq!(d, ["labels", "generationConfig.seed"]);
        assert!(out.get("labels").is_none() && out.get("seed").is_none());
        assert_eq!(conv(GE, OA, &b).0["seed"], 3);
        // Refused: more answers than one, provider-only tools, safety policy.
        let mut b = gemini_cli();
        b["generationConfig"]["candidateCount"] = json!(2);
        assert_eq!(refused(GE, AN, &b).param.as_deref(), Some("n"));
        let mut b = gemini_cli();
        b["tools"]
            .as_array_mut()
            .unwrap()
            .push(json!({"googleSearch": {}}));
        assert_eq!(refused(GE, OA, &b).param.as_deref(), Some("tools[1]"));
        let mut b = gemini_cli();
        b["safetySettings"] = json!([]);
        assert_eq!(refused(GE, RS, &b).param.as_deref(), Some("safetySettings"));
    }
}
