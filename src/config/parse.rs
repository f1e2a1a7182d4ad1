//! Text -> interpolated YAML tree -> `ConfigFile`, collecting every problem
//! serde meets with its YAML path (for `--test`), not just the first one. The
//! checks serde cannot do run above, in `runtime::load`.

use super::env::interpolate;
use super::file::*;
use super::problem::Problem;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

pub(crate) fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// A parsed file plus what is worth a warning (unset variables, disabled providers).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub file: ConfigFile,
    pub warnings: Vec<String>,
    /// The interpolated file with its secrets redacted (`GET /admin/config`).
    pub redacted: serde_json::Value,
}

const SECTIONS: [&str; 4] = ["keys", "providers", "models", "routes"];

fn de<T: DeserializeOwned>(v: Value, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match (path.is_empty(), inner.as_str()) {
                (true, ".") => "(root)".to_string(),
                (true, _) => inner,
                (false, ".") => path.to_string(),
                (false, _) => format!("{path}.{inner}"),
            };
            problems.push(problem(full, e.into_inner().to_string()));
            None
        }
    }
}

fn de_list<T: DeserializeOwned>(
    v: Option<Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Vec<T> {
    match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Sequence(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| de(item, &format!("{name}[{i}]"), problems))
            .collect(),
        Some(_) => {
            problems.push(problem(name, "expected a list"));
            vec![]
        }
    }
}

/// A file as serde read it, and the problems met on the way; validation
/// (`runtime::load`) adds its own before anything is accepted.
pub struct Parsed {
    pub loaded: Loaded,
    pub problems: Vec<Problem>,
}

/// Parse config text (not yet validated). `lookup` reads environment
/// variables. Err: nothing to validate (not YAML, not a mapping).
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, Vec<Problem>> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "(root)".into());
        vec![problem(at, format!("not valid YAML: {e}"))]
    })?;
    if root.is_null() {
        root = Value::Mapping(Default::default());
    }
    let mut unset = vec![];
    interpolate(&mut root, lookup, &mut unset);
    let redacted = super::redact::tree(&root);
    let Value::Mapping(mut map) = root else {
        return Err(vec![problem("(root)", "expected a mapping of settings")]);
    };

    let mut problems = vec![];
    let mut sections: Vec<Option<Value>> = vec![];
    for name in SECTIONS {
        sections.push(map.remove(name));
    }
    // Check each top-level setting on its own so every bad one is reported.
    let names: Vec<Value> = map.keys().cloned().collect();
    for name in names {
        let mut one = serde_yaml::Mapping::new();
        let v = map.get(&name).cloned().unwrap_or(Value::Null);
        one.insert(name.clone(), v);
        if de::<Settings>(Value::Mapping(one), "", &mut problems).is_none() {
            map.remove(&name);
        }
    }
    let settings: Settings = de(Value::Mapping(map), "", &mut problems).unwrap_or_default();
    let mut it = sections.into_iter();
    let mut keys: Vec<KeyConf> = de_list(it.next().flatten(), "keys", &mut problems);
    let dropped = drop_unset_optional_keys(&mut keys);
    let providers: Vec<ProviderConf> = de_list(it.next().flatten(), "providers", &mut problems);
    let models: Vec<ModelConf> = de_list(it.next().flatten(), "models", &mut problems);
    let routes: Vec<RouteConf> = de_list(it.next().flatten(), "routes", &mut problems);

    let file = ConfigFile {
        settings,
        keys,
        providers,
        models,
        routes,
    };
    let mut warnings: Vec<String> = unset
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|v| format!("environment variable {v} is not set"))
        .collect();
    warnings.extend(dropped);
    Ok(Parsed {
        loaded: Loaded {
            file,
            warnings,
            redacted,
        },
        problems,
    })
}

/// `optional: true` keys whose key is empty (an unset variable) are left
/// out; returns a warning for each.
fn drop_unset_optional_keys(keys: &mut Vec<KeyConf>) -> Vec<String> {
    let mut warnings = vec![];
    keys.retain(|k| {
        let unset = k.optional && k.key.as_deref() == Some("") && k.sha256.is_none();
        if unset {
            warnings.push(format!(
                "gateway key '{}' is optional and empty (its variable unset): left out",
                k.id
            ));
        }
        !unset
    });
    warnings
}
