//! Rate limits on models, shared by every instance (`GET`/`PUT
//! /admin/limits`). A rule covers one model or a group of models that share
//! one budget, for everyone together or for each user apart.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRules {
    #[serde(default)]
    pub rules: Vec<RateRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    /// Names the shared budget.
    pub name: String,
    /// The models the budget covers.
    pub models: Vec<String>,
    /// Requests per minute (0: no limit).
    #[serde(default)]
    pub rpm: u64,
    /// Tokens per minute, counted as prompt + max output (0: no limit).
    #[serde(default)]
    pub tpm: u64,
    /// A budget for each user instead of one for all.
    #[serde(default)]
    pub per_user: bool,
}

impl RateRules {
    pub fn matching<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a RateRule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.models.iter().any(|m| m == model))
    }

    pub fn validate(&self) -> Result<(), String> {
        for r in &self.rules {
            if r.name.trim().is_empty() || r.name.contains(':') {
                return Err("every rule needs a `name` without ':'".to_owned());
            }
            if r.models.is_empty() {
                return Err(format!("rule `{}` lists no models", r.name));
            }
        }
        Ok(())
    }
}
