//! What an answer cost: a built-in price table for the current OpenAI,
//! Anthropic and Gemini models, overridden and extended by `model_prices`,
//! matched by the upstream model name.
//!
//! Matching: a `model_prices` entry named exactly like the model, then its
//! globs in file order, then the longest name (configured or built in) the
//! model starts with — so dated snapshots (`claude-sonnet-4-5-20250929`,
//! `gpt-4o-2024-08-06`) take their family's price. A name with a vendor path
//! (`anthropic/claude-sonnet-4-5`, `models/gemini-2.5-flash`) is tried whole,
//! then after its last `/`.

use crate::config::file::PriceConf;
use crate::ir::Usage;
use globset::{Glob, GlobMatcher};
use std::collections::HashMap;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Input tokens read neither from nor into a cache.
    pub input: f64,
    pub output: f64,
    /// Input tokens read from a cache.
    pub cached_input: f64,
    /// Input tokens written to a cache (Anthropic's cache creation).
    pub cache_write: f64,
}

impl Price {
    /// Cost in micro-USD (USD per million tokens × tokens). `input` includes
    /// cached and cache-write tokens; `output` includes reasoning (priced as
    /// output).
    pub fn cost_micro_usd(&self, u: &Usage) -> f64 {
        let uncached = u
            .input
            .saturating_sub(u.cache_read.saturating_add(u.cache_write));
        uncached as f64 * self.input
            + u.cache_read as f64 * self.cached_input
            + u.cache_write as f64 * self.cache_write
            + u.output as f64 * self.output
    }

    pub fn cost_usd(&self, u: &Usage) -> f64 {
        self.cost_micro_usd(u) / 1e6
    }

    /// What a request may cost, in whole micro-USD: `input` and `output`
    /// tokens at the uncached rates.
    pub fn estimate_micro_usd(&self, input: u64, output: u64) -> u64 {
        (input as f64 * self.input + output as f64 * self.output).ceil() as u64
    }
}

/// (name, input, output, cached input, cache write); `None`: as input.
type Row = (&'static str, f64, f64, Option<f64>, Option<f64>);

/// Built-in prices, USD per million tokens, standard (not batch, not
/// priority) tier, text, the shortest context tier. From the providers'
/// pricing pages as known to this build's authors (openai.com/api/pricing,
/// anthropic.com/pricing, ai.google.dev/gemini-api/docs/pricing; state of
/// late 2025). Prices change: override or extend them with `model_prices`.
/// Anthropic's cache write is the 5-minute cache (1.25 × input).
const BUILTIN: &[Row] = &[
    // OpenAI
    ("gpt-5", 1.25, 10.0, Some(0.125), None),
    ("gpt-5-mini", 0.25, 2.0, Some(0.025), None),
    ("gpt-5-nano", 0.05, 0.40, Some(0.005), None),
    ("gpt-5-pro", 15.0, 120.0, None, None),
    ("gpt-4.1", 2.0, 8.0, Some(0.50), None),
    ("gpt-4.1-mini", 0.40, 1.60, Some(0.10), None),
    ("gpt-4.1-nano", 0.10, 0.40, Some(0.025), None),
    ("gpt-4.5-preview", 75.0, 150.0, Some(37.5), None),
    ("gpt-4o", 2.50, 10.0, Some(1.25), None),
    ("gpt-4o-2024-05-13", 5.0, 15.0, None, None),
    ("gpt-4o-mini", 0.15, 0.60, Some(0.075), None),
    ("chatgpt-4o-latest", 5.0, 15.0, None, None),
    ("gpt-4-turbo", 10.0, 30.0, None, None),
    ("gpt-4", 30.0, 60.0, None, None),
    ("gpt-3.5-turbo", 0.50, 1.50, None, None),
    ("o1", 15.0, 60.0, Some(7.50), None),
    ("o1-mini", 1.10, 4.40, Some(0.55), None),
    ("o1-pro", 150.0, 600.0, None, None),
    ("o3", 2.0, 8.0, Some(0.50), None),
    ("o3-mini", 1.10, 4.40, Some(0.55), None),
    ("o3-pro", 20.0, 80.0, None, None),
    ("o3-deep-research", 10.0, 40.0, Some(2.50), None),
    ("o4-mini", 1.10, 4.40, Some(0.275), None),
    ("o4-mini-deep-research", 2.0, 8.0, Some(0.50), None),
    ("codex-mini-latest", 1.50, 6.0, Some(0.375), None),
    ("text-embedding-3-small", 0.02, 0.0, None, None),
    ("text-embedding-3-large", 0.13, 0.0, None, None),
    ("text-embedding-ada-002", 0.10, 0.0, None, None),
    // Anthropic (cache read 0.1 × input, 5-minute cache write 1.25 × input)
    ("claude-opus-4-5", 5.0, 25.0, Some(0.50), Some(6.25)),
    ("claude-opus-4-1", 15.0, 75.0, Some(1.50), Some(18.75)),
    ("claude-opus-4", 15.0, 75.0, Some(1.50), Some(18.75)),
    ("claude-sonnet-4-5", 3.0, 15.0, Some(0.30), Some(3.75)),
    ("claude-sonnet-4", 3.0, 15.0, Some(0.30), Some(3.75)),
    ("claude-haiku-4-5", 1.0, 5.0, Some(0.10), Some(1.25)),
    ("claude-3-7-sonnet", 3.0, 15.0, Some(0.30), Some(3.75)),
    ("claude-3-5-sonnet", 3.0, 15.0, Some(0.30), Some(3.75)),
    ("claude-3-5-haiku", 0.80, 4.0, Some(0.08), Some(1.0)),
    ("claude-3-opus", 15.0, 75.0, Some(1.50), Some(18.75)),
    ("claude-3-haiku", 0.25, 1.25, Some(0.03), Some(0.30)),
    // Gemini (prompts up to 200k tokens; 128k for 1.5)
    ("gemini-3-pro-preview", 2.0, 12.0, Some(0.20), None),
    ("gemini-2.5-pro", 1.25, 10.0, Some(0.125), None),
    ("gemini-2.5-flash", 0.30, 2.50, Some(0.03), None),
    ("gemini-2.5-flash-lite", 0.10, 0.40, Some(0.01), None),
    ("gemini-2.0-flash", 0.10, 0.40, Some(0.025), None),
    ("gemini-2.0-flash-lite", 0.075, 0.30, None, None),
    ("gemini-1.5-pro", 1.25, 5.0, Some(0.3125), None),
    ("gemini-1.5-flash", 0.075, 0.30, Some(0.01875), None),
    ("gemini-1.5-flash-8b", 0.0375, 0.15, Some(0.01), None),
    ("gemini-embedding-001", 0.15, 0.0, None, None),
];

fn price(input: f64, output: f64, cached: Option<f64>, write: Option<f64>) -> Price {
    Price {
        input,
        output,
        cached_input: cached.unwrap_or(input),
        cache_write: write.unwrap_or(input),
    }
}

impl From<&PriceConf> for Price {
    fn from(c: &PriceConf) -> Self {
        price(c.input, c.output, c.cached_input, c.cache_write)
    }
}

/// Every known price, ready for lookups.
pub struct PriceBook {
    exact: HashMap<String, Price>,
    globs: Vec<(GlobMatcher, Price)>,
    /// Configured names and the built-in table, longest first.
    prefixes: Vec<(String, Price)>,
}

pub fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '[', '{'])
}

impl PriceBook {
    /// The built-in table with `model_prices` (validated) on top.
    pub fn new(conf: &[(String, PriceConf)]) -> Self {
        let mut exact = HashMap::new();
        let mut globs = vec![];
        for (name, c) in conf {
            if is_glob(name) {
                if let Ok(g) = Glob::new(name) {
                    globs.push((g.compile_matcher(), Price::from(c)));
                }
            } else {
                exact.insert(name.clone(), Price::from(c));
            }
        }
        let mut prefixes: Vec<(String, Price)> =
            exact.iter().map(|(n, p)| (n.clone(), *p)).collect();
        for &(n, i, o, c, w) in BUILTIN {
            if !exact.contains_key(n) {
                prefixes.push((n.to_string(), price(i, o, c, w)));
            }
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        PriceBook {
            exact,
            globs,
            prefixes,
        }
    }

    /// The price of an upstream model, if known.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        self.lookup_one(model).or_else(|| {
            let (_, base) = model.rsplit_once('/')?;
            self.lookup_one(base)
        })
    }

    fn lookup_one(&self, model: &str) -> Option<Price> {
        if model.is_empty() {
            return None;
        }
        if let Some(p) = self.exact.get(model) {
            return Some(*p);
        }
        if let Some((_, p)) = self.globs.iter().find(|(g, _)| g.is_match(model)) {
            return Some(*p);
        }
        self.prefixes
            .iter()
            .find(|(n, _)| model.starts_with(n.as_str()))
            .map(|(_, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(input: f64, output: f64) -> PriceConf {
        PriceConf {
            input,
            output,
            cached_input: None,
            cache_write: None,
        }
    }

    #[test]
    fn families_snapshots_and_longest_prefix() {
        let b = PriceBook::new(&[]);
        let p = |m: &str| b.lookup(m).map(|p| (p.input, p.output));
        assert_eq!(p("claude-sonnet-4-5-20250929"), Some((3.0, 15.0)));
        assert_eq!(p("claude-opus-4-1-20250805"), Some((15.0, 75.0)));
        assert_eq!(p("claude-opus-4-5-20251101"), Some((5.0, 25.0)));
        assert_eq!(p("claude-3-5-haiku-latest"), Some((0.80, 4.0)));
        assert_eq!(p("gpt-4o-2024-08-06"), Some((2.5, 10.0)));
        assert_eq!(p("gpt-4o-2024-05-13"), Some((5.0, 15.0)));
        assert_eq!(p("gpt-4o-mini-2024-07-18"), Some((0.15, 0.60)));
        assert_eq!(p("gpt-4.1-mini"), Some((0.40, 1.60)));
        assert_eq!(p("o3-mini-2025-01-31"), Some((1.10, 4.40)));
        assert_eq!(p("gemini-2.5-flash-lite-preview-06-17"), Some((0.10, 0.40)));
        assert_eq!(p("models/gemini-2.5-pro"), Some((1.25, 10.0)));
        assert_eq!(p("anthropic/claude-haiku-4-5"), Some((1.0, 5.0)));
        assert_eq!(p("llama-3.3-70b"), None);
        assert_eq!(p(""), None);
        let c = b.lookup("claude-sonnet-4-5").unwrap();
        assert_eq!((c.cached_input, c.cache_write), (0.30, 3.75));
        let g = b.lookup("gpt-3.5-turbo-0125").unwrap();
        assert_eq!(
            g.cached_input, 0.50,
            "no cache discount: cached at the input rate"
        );
    }

    #[test]
    fn config_overrides_extends_and_globs() {
        let b = PriceBook::new(&[
            ("gpt-4o".into(), conf(1.0, 2.0)),
            ("my-*".into(), conf(7.0, 8.0)),
            ("my-special".into(), conf(9.0, 9.0)),
            ("local-llama".into(), conf(0.0, 0.0)),
        ]);
        let p = |m: &str| b.lookup(m).map(|p| (p.input, p.output));
        assert_eq!(p("gpt-4o"), Some((1.0, 2.0)));
        assert_eq!(
            p("gpt-4o-2024-08-06"),
            Some((1.0, 2.0)),
            "override covers snapshots"
        );
        assert_eq!(
            p("gpt-4o-mini"),
            Some((0.15, 0.60)),
            "longer built-in still wins"
        );
        assert_eq!(p("my-model"), Some((7.0, 8.0)));
        assert_eq!(
            p("my-special"),
            Some((9.0, 9.0)),
            "an exact name beats a glob"
        );
        assert_eq!(p("local-llama-3"), Some((0.0, 0.0)));
    }

    #[test]
    fn cost_of_each_token_kind() {
        let p = Price {
            input: 1000.0,
            output: 2000.0,
            cached_input: 100.0,
            cache_write: 1250.0,
        };
        let u = Usage {
            input: 21,
            output: 9,
            cache_read: 8,
            reasoning: 3,
            cache_write: 4,
        };
        // 9 uncached × 1000 + 8 × 100 + 4 × 1250 + 9 × 2000 µUSD
        assert_eq!(p.cost_micro_usd(&u), 9_000.0 + 800.0 + 5_000.0 + 18_000.0);
        assert!((p.cost_usd(&u) - 0.0328).abs() < 1e-12);
        assert_eq!(p.estimate_micro_usd(10, 5), 20_000);
        // Odd reports (cached larger than input) never underflow.
        let odd = Usage {
            input: 1,
            cache_read: 5,
            ..Default::default()
        };
        assert_eq!(p.cost_micro_usd(&odd), 500.0);
    }
}
