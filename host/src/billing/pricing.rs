//! Prices, in integers.
//!
//! A model is priced by ratios, in the convention most gateways share:
//! `model_ratio` 1.0 means $2 per million input tokens (so one token at ratio
//! 1.0 costs one quota unit when 500 000 units make a dollar);
//! `completion_ratio`, `cache_read_ratio` and `cache_write_ratio` are the
//! output, cached-input and cache-write prices relative to the input price.
//! A group ratio multiplies everything. A model may instead have a fixed
//! `price_per_call` in dollars (images, video, audio, rerank).
//!
//! Ratios are held as millionths ([`Ratio`]) and every charge is computed in
//! integer arithmetic, rounded up once at the end: the same usage always
//! costs the same number of units, on every instance and database.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::adapters::Usage;

/// A non-negative decimal ratio with six decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ratio(u64);

impl Ratio {
    pub const ONE: Ratio = Ratio(1_000_000);
    pub const ZERO: Ratio = Ratio(0);

    /// From millionths.
    pub const fn micros(m: u64) -> Self {
        Self(m)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    pub fn from_f64(x: f64) -> Option<Self> {
        if !x.is_finite() || !(0.0..=10_000.0).contains(&x) {
            return None;
        }
        Some(Self((x * 1e6).round() as u64))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        Ratio::from_f64(x).ok_or_else(|| {
            serde::de::Error::custom(format!("{x} is not a ratio: use a number from 0 to 10000"))
        })
    }
}

/// The price of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    #[serde(default = "one")]
    pub model_ratio: Ratio,
    #[serde(default = "one")]
    pub completion_ratio: Ratio,
    #[serde(default = "one")]
    pub cache_read_ratio: Ratio,
    #[serde(default = "one")]
    pub cache_write_ratio: Ratio,
    /// Dollars per call, replacing the token prices when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_call: Option<Ratio>,
    /// Dollars per call for variants of a request (image sizes and
    /// qualities), replacing `price_per_call` when one matches: keyed by
    /// `size` (`"1024x1792"`), `quality` (`"hd"`) or both as
    /// `"size/quality"` (`"1024x1792/hd"`); the most specific key wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variant_prices: BTreeMap<String, Ratio>,
}

fn one() -> Ratio {
    Ratio::ONE
}

impl ModelPrice {
    pub const fn tokens(model: u64, completion: u64, cache_read: u64, cache_write: u64) -> Self {
        Self {
            model_ratio: Ratio(model),
            completion_ratio: Ratio(completion),
            cache_read_ratio: Ratio(cache_read),
            cache_write_ratio: Ratio(cache_write),
            price_per_call: None,
            variant_prices: BTreeMap::new(),
        }
    }

    pub const fn per_call(dollars_micros: u64) -> Self {
        Self {
            model_ratio: Ratio::ONE,
            completion_ratio: Ratio::ONE,
            cache_read_ratio: Ratio::ONE,
            cache_write_ratio: Ratio::ONE,
            price_per_call: Some(Ratio(dollars_micros)),
            variant_prices: BTreeMap::new(),
        }
    }

    /// A per-call price with variant prices (dollars in millionths).
    fn per_call_with(dollars_micros: u64, variants: &[(&str, u64)]) -> Self {
        let mut price = Self::per_call(dollars_micros);
        price.variant_prices = variants
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Ratio(*v)))
            .collect();
        price
    }
}

/// The price list in force: per model, per group, and what to do with
/// models it does not list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default)]
    pub models: BTreeMap<String, ModelPrice>,
    #[serde(default)]
    pub groups: BTreeMap<String, Ratio>,
    /// Serve models with no price at `unpriced` (off: they are refused).
    #[serde(default)]
    pub allow_unpriced: bool,
    #[serde(default = "unpriced_default")]
    pub unpriced: ModelPrice,
}

fn unpriced_default() -> ModelPrice {
    ModelPrice::tokens(1_000_000, 1_000_000, 1_000_000, 1_000_000)
}

/// What one call was priced at, kept in its hold and its log row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceSnapshot {
    #[serde(flatten)]
    pub model: ModelPrice,
    pub group_ratio: Ratio,
    pub quota_per_usd: u64,
}

impl Pricing {
    /// The price of `model` for `group`, or `None` if it is not priced and
    /// unpriced models are refused. `variant` lists the request's variant
    /// keys, most specific first (see [`ModelPrice::variant_prices`]); the
    /// snapshot carries the per-call price that matched.
    pub fn quote(
        &self,
        model: &str,
        group: &str,
        quota_per_usd: u64,
        variant: &[String],
    ) -> Option<PriceSnapshot> {
        let mut price = match self.models.get(model) {
            Some(p) => p.clone(),
            None if self.allow_unpriced => self.unpriced.clone(),
            None => return None,
        };
        if let Some(p) = variant.iter().find_map(|k| price.variant_prices.get(k)) {
            price.price_per_call = Some(*p);
        }
        price.variant_prices.clear();
        Some(PriceSnapshot {
            model: price,
            group_ratio: self.groups.get(group).copied().unwrap_or(Ratio::ONE),
            quota_per_usd,
        })
    }
}

impl PriceSnapshot {
    /// The quota `usage` costs: for token prices,
    /// `(plain input + cached × cache_read + cache writes × cache_write +
    /// output × completion) × model_ratio × group_ratio` units; for a
    /// per-call price, `price × calls × quota_per_usd × group_ratio`
    /// (calls = the largest per-call unit reported, at least one).
    /// Rounded up to a whole unit.
    pub fn cost(&self, usage: &Usage) -> i64 {
        const M: u128 = 1_000_000;
        let group = u128::from(self.group_ratio.0);
        let total_micro3: u128 = if let Some(per_call) = self.model.price_per_call {
            let calls = usage
                .units
                .iter()
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(1)
                .max(1);
            // dollars(µ) × calls × units-per-dollar × group(µ) → µ² units; scale to µ³.
            u128::from(per_call.0)
                .saturating_mul(u128::from(calls))
                .saturating_mul(u128::from(self.quota_per_usd))
                .saturating_mul(group)
                .saturating_mul(M)
        } else {
            let m = &self.model;
            let cached = u128::from(usage.cache_read_tokens.min(usage.input_tokens));
            let writes = u128::from(
                usage
                    .cache_write_tokens
                    .min(usage.input_tokens - cached as u64),
            );
            let plain = u128::from(usage.input_tokens) - cached - writes;
            // Token counts × ratios (µ), summed → µ; × model (µ) × group (µ) → µ³.
            let weighted = (plain * M)
                .saturating_add(cached * u128::from(m.cache_read_ratio.0))
                .saturating_add(writes * u128::from(m.cache_write_ratio.0))
                .saturating_add(u128::from(usage.output_tokens) * u128::from(m.completion_ratio.0));
            weighted
                .saturating_mul(u128::from(m.model_ratio.0))
                .saturating_mul(group)
        };
        let units = total_micro3.div_ceil(M * M * M);
        i64::try_from(units).unwrap_or(i64::MAX)
    }

    /// An upper estimate of a call's cost before it runs.
    pub fn estimate(&self, prompt_tokens: u64, max_output_tokens: u64) -> i64 {
        let usage = Usage {
            input_tokens: prompt_tokens,
            output_tokens: max_output_tokens,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            units: Vec::new(),
        };
        self.cost(&usage)
    }
}

macro_rules! prices {
    ($($model:literal => $price:expr),* $(,)?) => {
        &[$(($model, $price)),*]
    };
}

const fn tok(model: u64, completion: u64, cache_read: u64, cache_write: u64) -> ModelPrice {
    ModelPrice::tokens(model, completion, cache_read, cache_write)
}

/// Prices shipped with the binary for common models (ratios in millionths;
/// see the module docs). Operators override them with `PUT /admin/pricing`.
const DEFAULT_MODELS: &[(&str, ModelPrice)] = prices! {
    "gpt-4o" => tok(1_250_000, 4_000_000, 500_000, 1_000_000),
    "gpt-4o-mini" => tok(75_000, 4_000_000, 500_000, 1_000_000),
    "gpt-4.1" => tok(1_000_000, 4_000_000, 250_000, 1_000_000),
    "gpt-4.1-mini" => tok(200_000, 4_000_000, 250_000, 1_000_000),
    "gpt-4.1-nano" => tok(50_000, 4_000_000, 250_000, 1_000_000),
    "gpt-5" => tok(625_000, 8_000_000, 100_000, 1_000_000),
    "gpt-5-mini" => tok(125_000, 8_000_000, 100_000, 1_000_000),
    "gpt-5-nano" => tok(25_000, 8_000_000, 100_000, 1_000_000),
    "o3" => tok(1_000_000, 4_000_000, 250_000, 1_000_000),
    "o4-mini" => tok(550_000, 4_000_000, 250_000, 1_000_000),
    "gpt-3.5-turbo" => tok(250_000, 3_000_000, 1_000_000, 1_000_000),
    "text-embedding-3-small" => tok(10_000, 1_000_000, 1_000_000, 1_000_000),
    "text-embedding-3-large" => tok(65_000, 1_000_000, 1_000_000, 1_000_000),
    "claude-sonnet-4-5" => tok(1_500_000, 5_000_000, 100_000, 1_250_000),
    "claude-sonnet-4" => tok(1_500_000, 5_000_000, 100_000, 1_250_000),
    "claude-opus-4-1" => tok(7_500_000, 5_000_000, 100_000, 1_250_000),
    "claude-3-5-haiku" => tok(400_000, 5_000_000, 100_000, 1_250_000),
    "claude-haiku-4-5" => tok(500_000, 5_000_000, 100_000, 1_250_000),
    "gemini-2.5-pro" => tok(625_000, 8_000_000, 250_000, 1_000_000),
    "gemini-2.5-flash" => tok(150_000, 8_333_333, 250_000, 1_000_000),
    "gemini-2.0-flash" => tok(50_000, 4_000_000, 250_000, 1_000_000),
    "deepseek-chat" => tok(135_000, 4_074_074, 259_259, 1_000_000),
    "deepseek-reasoner" => tok(275_000, 3_981_818, 254_545, 1_000_000),
    "qwen-plus" => tok(200_000, 2_500_000, 1_000_000, 1_000_000),
    "glm-4.5" => tok(300_000, 4_000_000, 1_000_000, 1_000_000),
    "moonshot-v1-8k" => tok(850_000, 1_000_000, 1_000_000, 1_000_000),
    "gpt-image-1" => ModelPrice::per_call(42_000),
    "sora-2" => ModelPrice::per_call(400_000),
};

/// Default prices that depend on the request's size and quality.
fn default_variant_models() -> [(&'static str, ModelPrice); 2] {
    [
        (
            "dall-e-3",
            ModelPrice::per_call_with(
                40_000,
                &[
                    ("1024x1792", 80_000),
                    ("1792x1024", 80_000),
                    ("hd", 80_000),
                    ("1024x1792/hd", 120_000),
                    ("1792x1024/hd", 120_000),
                ],
            ),
        ),
        (
            "dall-e-2",
            ModelPrice::per_call_with(20_000, &[("256x256", 16_000), ("512x512", 18_000)]),
        ),
    ]
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            models: DEFAULT_MODELS
                .iter()
                .map(|(m, p)| ((*m).to_owned(), p.clone()))
                .chain(
                    default_variant_models()
                        .into_iter()
                        .map(|(m, p)| (m.to_owned(), p)),
                )
                .collect(),
            groups: BTreeMap::from([
                ("default".to_owned(), Ratio::ONE),
                ("vip".to_owned(), Ratio::micros(800_000)),
            ]),
            allow_unpriced: false,
            unpriced: unpriced_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cached: u64, writes: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cached,
            cache_write_tokens: writes,
            reasoning_tokens: 0,
            units: vec![],
        }
    }

    #[test]
    fn token_prices_are_exact_integers() {
        let p = Pricing::default();
        let gpt4o = p.quote("gpt-4o", "default", 500_000, &[]).unwrap();
        // 1000 in + 1000 out at ratio 1.25, completion 4: (1000 + 4000) × 1.25.
        assert_eq!(gpt4o.cost(&usage(1000, 1000, 0, 0)), 6250);
        // 400 of the 1000 input tokens cached at half price: (600 + 200 + 4000) × 1.25.
        assert_eq!(gpt4o.cost(&usage(1000, 1000, 400, 0)), 6000);
        // Rounded up once: 1 token at 0.075 → 0.075 → 1 unit.
        let mini = p.quote("gpt-4o-mini", "default", 500_000, &[]).unwrap();
        assert_eq!(mini.cost(&usage(1, 0, 0, 0)), 1);
        assert_eq!(mini.cost(&usage(0, 0, 0, 0)), 0);
        let vip = p.quote("gpt-4o", "vip", 500_000, &[]).unwrap();
        assert_eq!(vip.cost(&usage(1000, 1000, 0, 0)), 5000);
    }

    #[test]
    fn cache_writes_and_reads_are_priced_separately() {
        let claude = Pricing::default()
            .quote("claude-sonnet-4", "default", 500_000, &[])
            .unwrap();
        // 10 000 input: 6 000 cache reads (0.1), 2 000 writes (1.25), 2 000 plain; 100 out (5).
        let cost = claude.cost(&usage(10_000, 100, 6_000, 2_000));
        assert_eq!(
            cost,
            ((2_000 + 600 + 2_500 + 500) as f64 * 1.5).ceil() as i64
        );
        // Inconsistent counts (cached > input) cannot make a cost negative.
        assert!(claude.cost(&usage(10, 0, 50, 50)) >= 0);
    }

    #[test]
    fn per_call_prices() {
        let p = Pricing::default();
        let dalle = p.quote("dall-e-3", "default", 500_000, &[]).unwrap();
        assert_eq!(dalle.cost(&usage(0, 0, 0, 0)), 20_000);
        let mut two = usage(0, 0, 0, 0);
        two.units.push(("images".into(), 2));
        assert_eq!(dalle.cost(&two), 40_000);
    }

    #[test]
    fn variant_prices_pick_the_most_specific_key() {
        let p = Pricing::default();
        let quote = |keys: &[&str]| {
            let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
            p.quote("dall-e-3", "default", 500_000, &keys)
                .unwrap()
                .cost(&usage(0, 0, 0, 0))
        };
        assert_eq!(quote(&[]), 20_000);
        assert_eq!(
            quote(&["1024x1024/standard", "1024x1024", "standard"]),
            20_000
        );
        assert_eq!(quote(&["1024x1024/hd", "1024x1024", "hd"]), 40_000);
        assert_eq!(quote(&["1792x1024/hd", "1792x1024", "hd"]), 60_000);
        assert_eq!(quote(&["1792x1024"]), 40_000);
        // The snapshot holds the price that matched, not the table.
        let snap = p
            .quote("dall-e-3", "default", 500_000, &["hd".to_owned()])
            .unwrap();
        assert!(snap.model.variant_prices.is_empty());
        assert_eq!(snap.model.price_per_call, Some(Ratio::micros(80_000)));
        // Token-priced models ignore variants.
        let gpt = p
            .quote("gpt-4o", "default", 500_000, &["hd".to_owned()])
            .unwrap();
        assert_eq!(gpt.cost(&usage(1000, 0, 0, 0)), 1250);
    }

    #[test]
    fn unpriced_models_are_refused_unless_allowed() {
        let mut p = Pricing::default();
        assert!(p.quote("mystery", "default", 500_000, &[]).is_none());
        p.allow_unpriced = true;
        let q = p.quote("mystery", "default", 500_000, &[]).unwrap();
        assert_eq!(q.cost(&usage(3, 4, 0, 0)), 7);
    }

    #[test]
    fn pricing_round_trips_through_json() {
        let p = Pricing::default();
        let json = serde_json::to_string(&p).unwrap();
        let back: Pricing = serde_json::from_str(&json).unwrap();
        assert_eq!(p, back);
        assert!(serde_json::from_str::<Pricing>(r#"{"models":{"x":{"model_ratio":-1}}}"#).is_err());
        assert!(serde_json::from_str::<Pricing>(r#"{"modles":{}}"#).is_err());
    }
}
