//! JSON Schema ⇄ Gemini's OpenAPI-subset `Schema`.
//!
//! Gemini rejects a whole request when a tool's `parameters` (or a
//! `responseSchema`) holds a keyword it does not know: `$schema`, `$ref`,
//! `$defs`, `const`, `additionalProperties`, `uniqueItems`, `exclusiveMinimum`,
//! `examples`, `$comment`, ... (issue 4). Real clients send exactly those:
//! pydantic emits `$defs` + `$ref` + `title` + `default`, OpenAI strict schemas
//! carry `additionalProperties: false`, zod adds `$schema`. So the conversion
//! to Gemini is an ALLOW-list: only keywords of Gemini's `Schema` message are
//! kept, and the ones that carry meaning are rewritten instead of dropped:
//! - `$ref` to `#/$defs/X` / `#/definitions/X` is inlined (recursive references
//!   are cut at the second visit to an open object, with the description kept);
//! - `const: "a"` becomes `enum: ["a"]`;
//! - `type: ["string", "null"]` becomes `type: STRING, nullable: true`; other
//!   type unions become `anyOf`;
//! - `anyOf`/`oneOf` containing `{"type": "null"}` become `nullable: true`, a
//!   single remaining branch is inlined; `allOf` branches are merged;
//! - non-string `enum`s (Gemini only takes string enums) and unsupported
//!   `format`s / `pattern`s are moved into the description so the model still
//!   sees the constraint;
//! - `exclusiveMinimum`/`exclusiveMaximum` (numbers) become `minimum`/`maximum`.
//!
//! Types are written upper-case (`OBJECT`, `STRING`), as Gemini's own SDKs do.
//! The reverse direction ([`from_gemini`]) turns a Gemini schema into plain JSON
//! Schema for the other formats (lower-case types, `nullable` → `[t, "null"]`).

use serde_json::{Map, Value};

/// Recursion bound for schemas (and for `$ref` inlining): deeper nodes are
/// replaced by an untyped object so hostile input cannot blow the stack.
const MAX_DEPTH: usize = 48;

/// Formats Gemini accepts, per type.
fn format_allowed(ty: &str, format: &str) -> bool {
    match ty {
        "STRING" => matches!(format, "enum" | "date-time"),
        "NUMBER" => matches!(format, "float" | "double"),
        "INTEGER" => matches!(format, "int32" | "int64"),
        _ => false,
    }
}

fn gemini_type(t: &str) -> Option<&'static str> {
    Some(match t.to_ascii_lowercase().as_str() {
        "string" => "STRING",
        "number" => "NUMBER",
        "integer" => "INTEGER",
        "boolean" => "BOOLEAN",
        "array" => "ARRAY",
        "object" => "OBJECT",
        "null" => "NULL",
        _ => return None,
    })
}

/// Convert a JSON Schema into a Gemini `Schema` (allow-listed keywords only).
pub fn to_gemini(schema: &Value) -> Value {
    let defs = collect_defs(schema);
    let mut stack = Vec::new();
    let out = convert(schema, &defs, 0, &mut stack);
    Value::Object(out)
}

fn collect_defs(root: &Value) -> Map<String, Value> {
    let mut defs = Map::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(m)) = root.get(key) {
            for (k, v) in m {
                defs.insert(format!("#/{key}/{k}"), v.clone());
            }
        }
    }
    defs
}

fn append_description(out: &mut Map<String, Value>, note: &str) {
    let text = match out.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{d} ({note})"),
        _ => format!("({note})"),
    };
    out.insert("description".into(), Value::String(text));
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
        || v.get("type")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() == 1 && a[0].as_str() == Some("null"))
}

fn convert(
    node: &Value,
    defs: &Map<String, Value>,
    depth: usize,
    stack: &mut Vec<String>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let obj = match node {
        Value::Object(m) => m,
        // `true` / `{}` = anything; `false` cannot be expressed: both become an
        // untyped schema, which Gemini accepts.
        _ => return out,
    };
    if depth > MAX_DEPTH {
        out.insert("type".into(), "OBJECT".into());
        return out;
    }

    // $ref: inline the definition, then let sibling keywords refine it.
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        if let Some(def) = defs.get(r) {
            if stack.iter().any(|s| s == r) {
                // Recursive type: cut the cycle here.
                out.insert("type".into(), "OBJECT".into());
                if let Some(d) = def.get("description").and_then(Value::as_str) {
                    out.insert("description".into(), d.into());
                }
            } else {
                stack.push(r.to_string());
                out = convert(def, defs, depth + 1, stack);
                stack.pop();
            }
        } else {
            out.insert("type".into(), "OBJECT".into());
        }
    }

    // allOf: merge every branch into this node.
    if let Some(Value::Array(all)) = obj.get("allOf") {
        for b in all {
            let conv = convert(b, defs, depth + 1, stack);
            merge_into(&mut out, conv);
        }
    }

    let mut nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    // type (string or array of strings)
    let mut types: Vec<&'static str> = Vec::new();
    match obj.get("type") {
        Some(Value::String(t)) => types.extend(gemini_type(t)),
        Some(Value::Array(ts)) => {
            for t in ts.iter().filter_map(Value::as_str) {
                if let Some(g) = gemini_type(t) {
                    types.push(g);
                }
            }
        }
        _ => {}
    }
    if types.contains(&"NULL") {
        nullable = true;
        types.retain(|t| *t != "NULL");
    }
    match types.len() {
        0 => {}
        1 => {
            out.insert("type".into(), types[0].into());
        }
        _ => {
            let branches: Vec<Value> = types
                .iter()
                .map(|t| {
                    let mut b = Map::new();
                    b.insert("type".into(), (*t).into());
                    Value::Object(b)
                })
                .collect();
            out.insert("anyOf".into(), Value::Array(branches));
        }
    }

    // A $ref'd definition's description is less specific than the field's own:
    // the field's wins.
    if let Some(Value::String(d)) = obj.get("description") {
        out.insert("description".into(), Value::String(d.clone()));
    }

    // const → one-value enum; enum kept only when every value is a string.
    let mut enum_vals: Option<Vec<Value>> = None;
    if let Some(c) = obj.get("const") {
        enum_vals = Some(vec![c.clone()]);
    }
    if let Some(Value::Array(e)) = obj.get("enum") {
        enum_vals = Some(e.clone());
    }
    if let Some(vals) = enum_vals {
        let non_null: Vec<&Value> = vals.iter().filter(|v| !v.is_null()).collect();
        if non_null.len() < vals.len() {
            nullable = true;
        }
        if !non_null.is_empty() && non_null.iter().all(|v| v.is_string()) {
            out.insert("type".into(), "STRING".into());
            out.insert(
                "enum".into(),
                Value::Array(non_null.into_iter().cloned().collect()),
            );
        } else if !non_null.is_empty() {
            let listed: Vec<String> = non_null.iter().map(|v| v.to_string()).collect();
            append_description(&mut out, &format!("allowed values: {}", listed.join(", ")));
            if !out.contains_key("type") {
                if non_null.iter().all(|v| v.is_i64() || v.is_u64()) {
                    out.insert("type".into(), "INTEGER".into());
                } else if non_null.iter().all(|v| v.is_number()) {
                    out.insert("type".into(), "NUMBER".into());
                } else if non_null.iter().all(|v| v.is_boolean()) {
                    out.insert("type".into(), "BOOLEAN".into());
                }
            }
        }
    }

    // anyOf / oneOf
    let mut any: Vec<&Value> = Vec::new();
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(a)) = obj.get(key) {
            any.extend(a.iter());
        }
    }
    if !any.is_empty() {
        if any.iter().any(|b| is_null_schema(b)) {
            nullable = true;
        }
        let branches: Vec<Map<String, Value>> = any
            .into_iter()
            .filter(|b| !is_null_schema(b))
            .map(|b| convert(b, defs, depth + 1, stack))
            .collect();
        if branches.len() == 1 {
            let only = branches.into_iter().next().unwrap_or_default();
            // Field-level keys (description) win over the branch's.
            let own_desc = out.remove("description");
            merge_into(&mut out, only);
            if let Some(d) = own_desc {
                out.insert("description".into(), d);
            }
        } else if !branches.is_empty() {
            out.insert(
                "anyOf".into(),
                Value::Array(branches.into_iter().map(Value::Object).collect()),
            );
        }
    }

    // object keywords
    if let Some(Value::Object(props)) = obj.get("properties") {
        let mut p = Map::new();
        for (k, v) in props {
            p.insert(k.clone(), Value::Object(convert(v, defs, depth + 1, stack)));
        }
        if let Some(Value::Array(req)) = obj.get("required") {
            let req: Vec<Value> = req
                .iter()
                .filter(|r| r.as_str().is_some_and(|r| p.contains_key(r)))
                .cloned()
                .collect();
            if !req.is_empty() {
                out.insert("required".into(), Value::Array(req));
            }
        }
        if !out.contains_key("type") && !out.contains_key("anyOf") {
            out.insert("type".into(), "OBJECT".into());
        }
        out.insert("properties".into(), Value::Object(p));
    }
    if let Some(Value::Array(order)) = obj.get("propertyOrdering")
        && order.iter().all(Value::is_string)
    {
        out.insert("propertyOrdering".into(), Value::Array(order.clone()));
    }

    // array keywords
    match obj.get("items") {
        Some(items @ Value::Object(_)) => {
            out.insert(
                "items".into(),
                Value::Object(convert(items, defs, depth + 1, stack)),
            );
        }
        Some(Value::Array(tuple)) => {
            out.insert("items".into(), tuple_items(tuple, defs, depth, stack));
        }
        Some(Value::Bool(_)) => {
            out.insert("items".into(), Value::Object(Map::new()));
        }
        _ => {
            if let Some(Value::Array(tuple)) = obj.get("prefixItems") {
                out.insert("items".into(), tuple_items(tuple, defs, depth, stack));
            }
        }
    }
    if out.get("type").and_then(Value::as_str) == Some("ARRAY") && !out.contains_key("items") {
        // Gemini requires `items` on arrays.
        out.insert("items".into(), Value::Object(Map::new()));
    }

    // numeric / length bounds
    for key in [
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
    ] {
        if let Some(n) = obj.get(key).and_then(Value::as_u64) {
            out.insert(key.into(), n.into());
        }
    }
    for key in ["minimum", "maximum"] {
        if let Some(n) = obj.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), n.clone());
        }
    }
    for (ex, key) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(n) = obj.get(ex).filter(|v| v.is_number())
            && !out.contains_key(key)
        {
            out.insert(key.into(), n.clone());
        }
    }

    // format: only the ones Gemini knows for the type; others become a note.
    if let Some(Value::String(f)) = obj.get("format") {
        let ty = out.get("type").and_then(Value::as_str).unwrap_or("");
        if format_allowed(ty, f) {
            out.insert("format".into(), Value::String(f.clone()));
        } else {
            append_description(&mut out, &format!("format: {f}"));
        }
    }
    if let Some(Value::String(p)) = obj.get("pattern") {
        append_description(&mut out, &format!("pattern: {p}"));
    }

    if nullable {
        out.insert("nullable".into(), Value::Bool(true));
    }
    out
}

fn tuple_items(
    tuple: &[Value],
    defs: &Map<String, Value>,
    depth: usize,
    stack: &mut Vec<String>,
) -> Value {
    let branches: Vec<Value> = tuple
        .iter()
        .map(|t| Value::Object(convert(t, defs, depth + 1, stack)))
        .collect();
    match branches.len() {
        0 => Value::Object(Map::new()),
        1 => branches.into_iter().next().unwrap_or_default(),
        _ => {
            let mut m = Map::new();
            m.insert("anyOf".into(), Value::Array(branches));
            Value::Object(m)
        }
    }
}

/// Merge `from` into `into`; object `properties` are unioned, `required` concatenated.
fn merge_into(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k), v) {
            ("properties", Some(Value::Object(a)), Value::Object(b)) => {
                for (pk, pv) in b {
                    a.insert(pk, pv);
                }
            }
            ("required", Some(Value::Array(a)), Value::Array(b)) => {
                for r in b {
                    if !a.contains(&r) {
                        a.push(r);
                    }
                }
            }
            (_, _, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Convert a Gemini `Schema` (OpenAPI subset, upper-case types) into JSON Schema.
/// Unknown keywords are dropped; `nullable` becomes a `"null"` type member.
pub fn from_gemini(schema: &Value) -> Value {
    from_gemini_depth(schema, 0)
}

fn from_gemini_depth(schema: &Value, depth: usize) -> Value {
    let Value::Object(obj) = schema else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    if depth > MAX_DEPTH {
        out.insert("type".into(), "object".into());
        return Value::Object(out);
    }
    let nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        let t = t.to_ascii_lowercase();
        if t != "type_unspecified" {
            if nullable {
                out.insert(
                    "type".into(),
                    Value::Array(vec![Value::String(t), "null".into()]),
                );
            } else {
                out.insert("type".into(), Value::String(t));
            }
        }
    }
    for key in [
        "description",
        "title",
        "enum",
        "required",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "pattern",
        "default",
        "example",
    ] {
        if let Some(v) = obj.get(key) {
            let key = if key == "example" { "examples" } else { key };
            let v = if key == "examples" {
                Value::Array(vec![v.clone()])
            } else {
                v.clone()
            };
            out.insert(key.into(), v);
        }
    }
    if let Some(Value::String(f)) = obj.get("format")
        && f != "enum"
    {
        out.insert("format".into(), Value::String(f.clone()));
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        let p: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), from_gemini_depth(v, depth + 1)))
            .collect();
        out.insert("properties".into(), Value::Object(p));
    }
    if let Some(items) = obj.get("items") {
        out.insert("items".into(), from_gemini_depth(items, depth + 1));
    }
    if let Some(Value::Array(any)) = obj.get("anyOf") {
        let mut branches: Vec<Value> = any
            .iter()
            .map(|b| from_gemini_depth(b, depth + 1))
            .collect();
        if nullable && !out.contains_key("type") {
            let mut n = Map::new();
            n.insert("type".into(), "null".into());
            branches.push(Value::Object(n));
        }
        out.insert("anyOf".into(), Value::Array(branches));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every key anywhere in a converted schema must be one Gemini's Schema knows.
    fn assert_allowed(v: &Value, path: &str) {
        const ALLOWED: &[&str] = &[
            "type",
            "format",
            "description",
            "nullable",
            "enum",
            "items",
            "properties",
            "required",
            "minItems",
            "maxItems",
            "minimum",
            "maximum",
            "anyOf",
            "propertyOrdering",
            "minLength",
            "maxLength",
            "minProperties",
            "maxProperties",
        ];
        if let Value::Object(m) = v {
            for (k, child) in m {
                assert!(
                    ALLOWED.contains(&k.as_str()),
                    "keyword {k} at {path} is not allowed by Gemini"
                );
                match k.as_str() {
                    "properties" => {
                        for (pk, pv) in child.as_object().expect("properties is an object") {
                            assert_allowed(pv, &format!("{path}.properties.{pk}"));
                        }
                    }
                    "items" => assert_allowed(child, &format!("{path}.items")),
                    "anyOf" => {
                        for (i, b) in child
                            .as_array()
                            .expect("anyOf is an array")
                            .iter()
                            .enumerate()
                        {
                            assert_allowed(b, &format!("{path}.anyOf[{i}]"));
                        }
                    }
                    "type" => {
                        let t = child.as_str().expect("type is a string");
                        assert!(
                            ["STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"]
                                .contains(&t),
                            "type {t} at {path}"
                        );
                    }
                    "enum" => assert!(
                        child.as_array().unwrap().iter().all(Value::is_string),
                        "non-string enum at {path}"
                    ),
                    _ => {}
                }
            }
        } else {
            panic!("schema node at {path} is not an object: {v}");
        }
    }

    #[test]
    fn pydantic_schema_with_defs_refs_titles_defaults() {
        // As pydantic v2 `model_json_schema()` emits it for nested models + Optional + Literal.
        let schema = json!({
            "$defs": {
                "Address": {
                    "properties": {
                        "street": {"title": "Street", "type": "string"},
                        "zip": {"title": "Zip", "type": "string", "pattern": "^[0-9]{5}$"}
                    },
                    "required": ["street", "zip"],
                    "title": "Address",
                    "type": "object"
                },
                "Color": {"enum": ["red", "green"], "title": "Color", "type": "string"}
            },
            "properties": {
                "name": {"title": "Name", "type": "string", "description": "Full name"},
                "age": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}], "default": null, "title": "Age"},
                "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
                "favourite": {"$ref": "#/$defs/Color"},
                "kind": {"const": "person", "default": "person", "title": "Kind", "type": "string"},
                "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array", "uniqueItems": true, "examples": [["a"]]},
                "email": {"type": "string", "format": "email", "$comment": "x"}
            },
            "required": ["name", "home"],
            "title": "Person",
            "type": "object",
            "$schema": "https://json-schema.org/draft/2020-12/schema"
        });
        let g = to_gemini(&schema);
        assert_allowed(&g, "$");
        assert_eq!(g["type"], "OBJECT");
        assert_eq!(g["required"], json!(["name", "home"]));
        assert_eq!(g["properties"]["name"]["description"], "Full name");
        assert_eq!(g["properties"]["age"]["type"], "INTEGER");
        assert_eq!(g["properties"]["age"]["nullable"], true);
        assert_eq!(g["properties"]["age"]["minimum"], 0);
        let home = &g["properties"]["home"];
        assert_eq!(home["type"], "OBJECT");
        assert_eq!(home["description"], "Where they live");
        assert_eq!(home["properties"]["street"]["type"], "STRING");
        assert_eq!(
            home["properties"]["zip"]["description"],
            "(pattern: ^[0-9]{5}$)"
        );
        assert_eq!(
            g["properties"]["favourite"]["enum"],
            json!(["red", "green"])
        );
        assert_eq!(g["properties"]["kind"]["enum"], json!(["person"]));
        assert_eq!(g["properties"]["tags"]["items"]["type"], "STRING");
        assert_eq!(g["properties"]["email"]["description"], "(format: email)");
    }

    #[test]
    fn openai_strict_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f", null]},
                "days": {"type": "array", "items": {"type": "object", "properties": {"d": {"type": "integer"}}, "required": ["d"], "additionalProperties": false}}
            },
            "required": ["location", "unit", "days"],
            "additionalProperties": false
        });
        let g = to_gemini(&schema);
        assert_allowed(&g, "$");
        assert_eq!(g["properties"]["unit"]["type"], "STRING");
        assert_eq!(g["properties"]["unit"]["nullable"], true);
        assert_eq!(g["properties"]["unit"]["enum"], json!(["c", "f"]));
        assert_eq!(
            g["properties"]["days"]["items"]["properties"]["d"]["type"],
            "INTEGER"
        );
    }

    #[test]
    fn recursive_refs_and_unions_terminate() {
        let schema = json!({
            "$defs": {"Node": {"type": "object", "description": "tree node", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                "value": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "level": {"enum": [1, 2, 3]}
            }}},
            "$ref": "#/$defs/Node",
            "definitions": {"unused": {"type": "string"}}
        });
        let g = to_gemini(&schema);
        assert_allowed(&g, "$");
        let child = &g["properties"]["children"]["items"];
        assert_eq!(child["type"], "OBJECT", "cycle is cut to an object");
        assert_eq!(child["description"], "tree node");
        assert_eq!(g["properties"]["value"]["anyOf"][1]["type"], "NUMBER");
        assert_eq!(g["properties"]["level"]["type"], "INTEGER");
        assert_eq!(
            g["properties"]["level"]["description"],
            "(allowed values: 1, 2, 3)"
        );
    }

    #[test]
    fn hostile_shapes_do_not_panic() {
        let mut deep = json!({"type": "string"});
        for _ in 0..500 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        let g = to_gemini(&deep);
        assert_eq!(g["type"], "OBJECT");
        for v in [
            json!(null),
            json!(true),
            json!([1, 2]),
            json!({"type": 5, "properties": [], "items": 3}),
            json!({"$ref": "#/nope"}),
            json!({"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "integer"}}}]}),
        ] {
            assert_allowed(&to_gemini(&v), "$");
        }
        let merged = to_gemini(
            &json!({"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "integer"}}}]}),
        );
        assert_eq!(merged["properties"]["b"]["type"], "INTEGER");
        assert_eq!(merged["required"], json!(["a"]));
    }

    #[test]
    fn gemini_schema_back_to_json_schema() {
        let g = json!({"type": "OBJECT", "properties": {"city": {"type": "STRING", "description": "The city name.", "nullable": true}, "n": {"type": "INTEGER", "format": "int32"}, "kind": {"type": "STRING", "format": "enum", "enum": ["a"]}}, "required": ["city"], "propertyOrdering": ["city", "n"]});
        let j = from_gemini(&g);
        assert_eq!(j["type"], "object");
        assert_eq!(j["properties"]["city"]["type"], json!(["string", "null"]));
        assert_eq!(j["properties"]["n"]["format"], "int32");
        assert!(j["properties"]["kind"].get("format").is_none());
        assert_eq!(j["required"], json!(["city"]));
        assert!(j.get("propertyOrdering").is_none());
        // and back again is stable
        let g2 = to_gemini(&j);
        assert_eq!(g2["properties"]["city"]["nullable"], true);
        assert_eq!(g2["properties"]["city"]["type"], "STRING");
    }
}
