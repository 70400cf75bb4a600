//! Channels: the upstreams a request can be routed to, and how one is picked.
//!
//! The routing table is an immutable [`Snapshot`] swapped whole behind an
//! `ArcSwap`: a request sees one consistent view while an admin change (made
//! through this instance, or noticed in the database from another) builds
//! and installs the next one.

pub mod types;
pub mod vertex;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Secret;
use crate::crypto::SecretBox;
use crate::store::{ChannelRow, Db};

pub const STATUS_ENABLED: i64 = 1;
pub const STATUS_DISABLED: i64 = 2;

/// The model name that makes a channel serve every model.
pub const ANY_MODEL: &str = "*";

/// A channel as the relay uses it, secret decrypted.
#[derive(Debug)]
pub struct Channel {
    pub id: i64,
    pub kind: String,
    pub name: String,
    /// The adapter that speaks this channel's protocol.
    pub adapter: String,
    pub base_url: String,
    /// The upstream keys (one per line of the stored secret); each has
    /// `max_concurrency` slots.
    pub keys: Vec<Secret>,
    pub models: Vec<String>,
    pub model_mapping: HashMap<String, String>,
    pub groups: Vec<String>,
    pub priority: i64,
    pub weight: i64,
    pub max_concurrency: i64,
    pub status: i64,
    /// The adapter's options (the host's own, below, are not among them).
    pub options: Vec<(String, String)>,
    /// Speak HTTP/2 to the upstream without negotiating it first (h2c on a
    /// plain `http://` base URL): option [`HTTP2_PRIOR_KNOWLEDGE`].
    pub http2_prior_knowledge: bool,
}

/// The channel option that makes Transit speak HTTP/2 to an upstream from
/// the first byte (`true` or `false`): for a plain-HTTP server that takes
/// HTTP/2 only that way (h2c), such as a mesh sidecar or an internal
/// gateway. All its calls then share a few multiplexed connections.
/// `https://` upstreams negotiate HTTP/2 by themselves and need no option.
pub const HTTP2_PRIOR_KNOWLEDGE: &str = "http2_prior_knowledge";

impl Channel {
    /// The model name sent upstream for a requested model.
    pub fn upstream_model<'a>(&'a self, requested: &'a str) -> &'a str {
        self.model_mapping
            .get(requested)
            .map(String::as_str)
            .unwrap_or(requested)
    }
}

/// The routing table at one point in time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The database stamp this snapshot was built from.
    pub version: String,
    pub channels: Vec<Arc<Channel>>,
    /// (group, model) → enabled channels, highest priority first.
    routes: HashMap<(String, String), Vec<Arc<Channel>>>,
    /// group → enabled channels serving any model, highest priority first.
    wildcard: HashMap<String, Vec<Arc<Channel>>>,
}

/// Why no channel could be offered for a model.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// No channel anywhere lists the model.
    UnknownModel,
    /// Channels list the model, but none is enabled for this group.
    NoChannel,
}

impl Snapshot {
    pub fn build(version: String, channels: Vec<Channel>) -> Self {
        let channels: Vec<Arc<Channel>> = channels.into_iter().map(Arc::new).collect();
        let mut routes: HashMap<(String, String), Vec<Arc<Channel>>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<Arc<Channel>>> = HashMap::new();
        for ch in &channels {
            if ch.status != STATUS_ENABLED {
                continue;
            }
            for group in &ch.groups {
                for model in &ch.models {
                    if model == ANY_MODEL {
                        wildcard.entry(group.clone()).or_default().push(ch.clone());
                    } else {
                        routes
                            .entry((group.clone(), model.clone()))
                            .or_default()
                            .push(ch.clone());
                    }
                }
            }
        }
        for list in routes.values_mut().chain(wildcard.values_mut()) {
            list.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
            list.dedup_by_key(|c| c.id);
        }
        Self {
            version,
            channels,
            routes,
            wildcard,
        }
    }

    /// The channel with `id`, enabled or not.
    pub fn channel(&self, id: i64) -> Option<Arc<Channel>> {
        self.channels.iter().find(|c| c.id == id).cloned()
    }

    /// Every enabled channel that can serve `model` for `group`, highest
    /// priority first (exact model matches and any-model channels merged).
    pub fn candidates(&self, group: &str, model: &str) -> Result<Vec<Arc<Channel>>, NoRoute> {
        let exact = self.routes.get(&(group.to_owned(), model.to_owned()));
        let any = self.wildcard.get(group);
        let mut all: Vec<Arc<Channel>> = exact
            .into_iter()
            .flatten()
            .chain(any.into_iter().flatten())
            .cloned()
            .collect();
        if all.is_empty() {
            let listed = self
                .channels
                .iter()
                .any(|c| c.models.iter().any(|m| m == model || m == ANY_MODEL));
            return Err(if listed {
                NoRoute::NoChannel
            } else {
                NoRoute::UnknownModel
            });
        }
        all.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        all.dedup_by_key(|c| c.id);
        Ok(all)
    }

    /// The models a group can call (not counting any-model channels).
    pub fn models_for_group(&self, group: &str) -> Vec<String> {
        let mut models: Vec<String> = self
            .routes
            .keys()
            .filter(|(g, _)| g == group)
            .map(|(_, m)| m.clone())
            .collect();
        models.sort();
        models
    }
}

/// The live routing table of this instance.
pub struct Router {
    current: ArcSwap<Snapshot>,
    db: Db,
    secrets: SecretBox,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("channels", &self.current.load().channels.len())
            .finish()
    }
}

impl Router {
    pub async fn load(db: Db, secrets: SecretBox) -> anyhow::Result<Self> {
        let router = Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            db,
            secrets,
        };
        router.reload().await?;
        Ok(router)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rebuild the table from the database.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let version = self.db.channels_version().await?;
        let rows = self.db.channels().await?;
        let mut channels = Vec::with_capacity(rows.len());
        for row in rows {
            match self.channel_of(row) {
                Ok(c) => channels.push(c),
                Err((id, e)) => {
                    tracing::error!(channel = id, error = %e, "channel skipped: its secret cannot be read")
                }
            }
        }
        self.current
            .store(Arc::new(Snapshot::build(version, channels)));
        Ok(())
    }

    /// Reload if another instance changed the channels since the last load.
    pub async fn refresh_if_changed(&self) -> anyhow::Result<bool> {
        let version = self.db.channels_version().await?;
        if version == self.current.load().version {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    /// Watch the database for channel changes made elsewhere.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(router) = router.upgrade() else {
                    return;
                };
                if let Err(e) = router.refresh_if_changed().await {
                    tracing::warn!(error = %e, "checking for channel changes failed");
                }
            }
        })
    }

    fn channel_of(&self, row: ChannelRow) -> Result<Channel, (i64, anyhow::Error)> {
        let id = row.id;
        let secret = self.secrets.decrypt(&row.secret_enc).map_err(|e| (id, e))?;
        // Service-account keys are JSON objects, often pretty-printed.
        let keys: Vec<Secret> = if vertex::is_vertex(&row.kind) {
            vertex::split_keys(secret.expose())
        } else {
            secret
                .expose()
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(Secret::new)
                .collect()
        };
        let model_mapping: HashMap<String, String> =
            serde_json::from_str(&row.model_mapping).unwrap_or_default();
        let mut options: HashMap<String, serde_json::Value> =
            serde_json::from_str(&row.options).unwrap_or_default();
        let http2_prior_knowledge =
            options.remove(HTTP2_PRIOR_KNOWLEDGE) == Some(serde_json::Value::Bool(true));
        let mut options: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        options.sort();
        let adapter = types::adapter_for(&row.kind).to_owned();
        Ok(Channel {
            id,
            adapter,
            kind: row.kind,
            name: row.name,
            base_url: row.base_url.trim_end_matches('/').to_owned(),
            keys,
            models: split_list(&row.models),
            model_mapping,
            groups: split_list(&row.group_names),
            priority: row.priority,
            weight: row.weight,
            max_concurrency: row.max_concurrency,
            status: row.status,
            options,
            http2_prior_knowledge,
        })
    }
}

/// Split a comma-separated list, trimming and dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(id: i64, models: &[&str], priority: i64, weight: i64, status: i64) -> Channel {
        Channel {
            id,
            kind: "openai".into(),
            name: format!("c{id}"),
            adapter: "openai".into(),
            base_url: String::new(),
            keys: vec![Secret::new("k")],
            models: models.iter().map(|m| m.to_string()).collect(),
            model_mapping: HashMap::new(),
            groups: vec!["default".into()],
            priority,
            weight,
            max_concurrency: 10,
            status,
            options: Vec::new(),
            http2_prior_knowledge: false,
        }
    }

    #[test]
    fn candidates_sorted_by_priority_with_wildcards() {
        let s = Snapshot::build(
            "v".into(),
            vec![
                ch(1, &["gpt"], 0, 1, STATUS_ENABLED),
                ch(2, &["gpt"], 5, 1, STATUS_ENABLED),
                ch(3, &["*"], 1, 1, STATUS_ENABLED),
                ch(4, &["gpt"], 9, 1, STATUS_DISABLED),
            ],
        );
        let ids: Vec<i64> = s
            .candidates("default", "gpt")
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, vec![2, 3, 1]);
        assert_eq!(
            s.candidates("default", "other").unwrap()[0].id,
            3,
            "any-model channel serves unknown names"
        );
        assert_eq!(s.candidates("vip", "gpt").unwrap_err(), NoRoute::NoChannel);
    }

    #[test]
    fn unknown_and_unserved_models_differ() {
        let s = Snapshot::build("v".into(), vec![ch(1, &["gpt"], 0, 1, STATUS_DISABLED)]);
        assert_eq!(
            s.candidates("default", "gpt").unwrap_err(),
            NoRoute::NoChannel
        );
        assert_eq!(
            s.candidates("default", "nope").unwrap_err(),
            NoRoute::UnknownModel
        );
    }
}
