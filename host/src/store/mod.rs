//! Persistence. All SQL lives under this module.
//!
//! One schema in three flavours (`migrations/{sqlite,postgres,mysql}`), used
//! through sqlx's `Any` driver so the backend is picked by the URL at run
//! time. Queries are written with `?` placeholders and rewritten to `$n` for
//! PostgreSQL by [`Db::sql`].

mod adapters;
mod channels;
mod holds;
mod logs;
mod money;
mod options;
pub mod tasks;
mod tokens;
mod users;

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row};

pub use channels::{ChannelRow, NewChannel};
pub use holds::{HoldRow, LedgerEntry, LineCharge, NewHold, Settlement};
pub use logs::{ConsumeLog, LogRow};
pub use money::{
    REDEMPTION_DISABLED, REDEMPTION_UNUSED, REDEMPTION_USED, RedemptionRow, TopupRow, UsageLine,
};
pub use tasks::{NewTask, TaskEnd, TaskRow};
pub use tokens::{NewToken, TokenRow, TokenWithUser};
pub use users::{NewUser, UserRow};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/mysql");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            other => anyhow::bail!(
                "unsupported database URL scheme {other:?}: use sqlite://, postgres:// or mysql://"
            ),
        }
    }
}

/// The database handle: a pool and the backend it talks to.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    /// Where the ledger writer's batches go ([`Db::write_ledger`]). On
    /// SQLite, a connection of its own: the pool hands its connections out
    /// in turn, and each batch on a connection whose page cache the last
    /// batches (on the others) made stale reads those pages back from the
    /// WAL file first. Its own connection has them at hand. Elsewhere (and
    /// for an SQLite database that is not a file), the pool.
    ledger: AnyPool,
    backend: Backend,
}

/// Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A pool of at most `max` connections to `backend`, set up as Transit
/// uses it.
fn pool_options(backend: Backend, max: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(std::time::Duration::from_secs(10));
    if backend != Backend::Sqlite {
        return options;
    }
    // WAL lets readers (token lookups) proceed while a write commits;
    // NORMAL sync in WAL mode survives a process crash and fsyncs at
    // checkpoints instead of on every commit.
    options.after_connect(|conn, _| {
        Box::pin(async move {
            use sqlx::Executor;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            conn.execute("PRAGMA busy_timeout = 10000").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            Ok(())
        })
    })
}

impl Db {
    /// Connect and bring the schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            // MariaDB URLs are MySQL URLs to the driver.
            Backend::MySql => url.replacen("mariadb://", "mysql://", 1),
            _ => url.to_owned(),
        };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(&url)
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating database directory {}", dir.display()))?;
        }
        let max = if backend == Backend::Sqlite { 8 } else { 32 };
        let pool = pool_options(backend, max)
            .connect(&url)
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        let ledger = if backend == Backend::Sqlite && sqlite_path(&url).is_some() {
            pool_options(backend, 1)
                .connect(&url)
                .await
                .with_context(|| format!("connecting to the {backend:?} database"))?
        } else {
            pool.clone()
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::MySql => &MYSQL_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Self {
            pool,
            ledger,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.ledger.close().await;
        self.pool.close().await;
    }

    /// Adapt a query written with `?` placeholders to the backend.
    pub fn sql<'a>(&self, query: &'a str) -> Cow<'a, str> {
        match self.backend {
            Backend::Postgres => Cow::Owned(numbered_placeholders(query)),
            _ => Cow::Borrowed(query),
        }
    }

    /// A typed query over `sql`, with placeholders adapted to the backend.
    pub(crate) fn qa<'a, T>(&self, sql: &'static str) -> AnyQueryAs<'a, T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as(AssertSqlSafe(self.sql(sql)))
    }

    /// A query over `sql`, with placeholders adapted to the backend.
    pub(crate) fn q<'a>(&self, sql: &'static str) -> AnyQuery<'a> {
        sqlx::query(AssertSqlSafe(self.sql(sql)))
    }

    /// A multi-row statement built at run time (the text holds
    /// placeholders only, never values). Row counts come from [`runs`], so
    /// there are few shapes, and each stays prepared in the connection's
    /// statement cache.
    pub(crate) fn multi_row<'a>(&self, sql: String) -> AnyQuery<'a> {
        let text: Cow<'static, str> = Cow::Owned(self.sql(&sql).into_owned());
        sqlx::query(AssertSqlSafe(text))
    }

    /// An `INSERT` query whose execution by [`Db::insert_id`] yields the new
    /// row's id (`RETURNING id` where the backend has it).
    pub(crate) fn insert_query<'a>(&self, sql: &'static str) -> AnyQuery<'a> {
        let text: Cow<'static, str> = match self.backend {
            Backend::MySql => Cow::Borrowed(sql),
            _ => Cow::Owned(format!("{} RETURNING id", self.sql(sql))),
        };
        sqlx::query(AssertSqlSafe(text))
    }

    /// Run a query built by [`Db::insert_query`] and return the new id.
    pub(crate) async fn insert_id<'c, E>(
        &self,
        query: AnyQuery<'_>,
        executor: E,
    ) -> sqlx::Result<i64>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        match self.backend {
            Backend::MySql => query
                .execute(executor)
                .await?
                .last_insert_id()
                .ok_or_else(|| sqlx::Error::Protocol("insert returned no id".into())),
            _ => query.fetch_one(executor).await?.try_get::<i64, _>(0),
        }
    }
}

pub(crate) type AnyQuery<'a> = Query<'a, Any, AnyArguments>;
pub(crate) type AnyQueryAs<'a, T> = sqlx::query::QueryAs<'a, Any, T, AnyArguments>;

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// `?` → `$1`, `$2`, … outside string literals and quoted identifiers.
fn numbered_placeholders(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 8);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in query.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push(c);
            }
            Some(_) => out.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            None => out.push(c),
        }
    }
    out
}

/// Rows in one multi-row statement at most (20 columns each stays far
/// below every backend's limit on bound parameters).
const MAX_RUN: usize = 64;

/// `items` in runs of 64, then of the powers of two that make up the rest
/// (100 rows: 64, 32, 4): a multi-row statement then has one of seven
/// shapes, each parsed once per connection instead of once per batch.
pub(crate) fn runs<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= MAX_RUN {
            MAX_RUN
        } else {
            1 << rest.len().ilog2()
        };
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_powers_of_two_up_to_the_most_per_statement() {
        let sizes = |n: usize| runs(&vec![0u8; n]).map(<[u8]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(37), [32, 4, 1]);
        assert_eq!(sizes(64), [64]);
        assert_eq!(sizes(100), [64, 32, 4]);
        assert_eq!(sizes(200), [64, 64, 64, 8]);
        let items: Vec<u32> = (0..77).collect();
        assert_eq!(runs(&items).flatten().copied().collect::<Vec<_>>(), items);
    }

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT ? , '?' , \"a?\" , ?"),
            "SELECT $1 , '?' , \"a?\" , $2"
        );
    }

    #[test]
    fn backends_from_urls() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(Backend::from_url("mariadb://h/db").unwrap(), Backend::MySql);
        assert!(Backend::from_url("oracle://h").is_err());
        assert_eq!(
            sqlite_path("sqlite://data/t.db?mode=rwc"),
            Some("data/t.db")
        );
    }
}
