//! Where runtime keys live: a JSON file (default `aigate-keys.json` next to
//! the config, written atomically: temp file + rename), or with
//! `limits.backend: redis` one Redis hash (`<key_prefix>admin:keys`, one
//! field per key id) that every node reads every second.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One runtime key as stored (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    /// Hex sha256 of the key.
    pub sha256: String,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub max_concurrent: Option<u64>,
    #[serde(default)]
    pub budget_usd_daily: Option<f64>,
    #[serde(default)]
    pub budget_usd_monthly: Option<f64>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub created_ms: u64,
    #[serde(default)]
    pub created_by: String,
}

const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

pub enum Backend {
    File(PathBuf),
    Redis(Box<RedisKeys>),
}

impl Backend {
    pub fn describe(&self) -> String {
        match self {
            Backend::File(p) => format!("in {}", p.display()),
            Backend::Redis(r) => format!("in Redis hash {}", r.hash),
        }
    }

    /// Every stored key (a missing file is an empty store).
    pub async fn load(&self) -> Result<BTreeMap<String, KeyRecord>, String> {
        match self {
            Backend::File(p) => read_file(p),
            Backend::Redis(r) => r.load().await,
        }
    }

    /// Store one key (`Some`) or remove it (`None`); `all` is the store after
    /// the change (what the file holds).
    pub async fn save(
        &self,
        id: &str,
        rec: Option<&KeyRecord>,
        all: &BTreeMap<String, KeyRecord>,
    ) -> Result<(), String> {
        match self {
            Backend::File(p) => write_file(p, all),
            Backend::Redis(r) => r.save(id, rec).await,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Backend::Redis(_))
    }
}

pub fn read_file(p: &Path) -> Result<BTreeMap<String, KeyRecord>, String> {
    let text = match std::fs::read_to_string(p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let list: Vec<KeyRecord> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a runtime key file: {e}", p.display()))?;
    Ok(list.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Temp file in the same directory, fsync, rename: a crash leaves the old
/// file or the new one, never half of one.
pub fn write_file(p: &Path, all: &BTreeMap<String, KeyRecord>) -> Result<(), String> {
    let list: Vec<&KeyRecord> = all.values().collect();
    let body = serde_json::to_vec_pretty(&list).map_err(|e| e.to_string())?;
    write_private(p, &body)
}

/// [`write_file`]'s atomic, owner-only write of any body.
pub fn write_private(p: &Path, body: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, p)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", p.display())
    })
}

/// Owner-only permissions: the file holds key digests and limits.
trait Private {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Private for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// The Redis hash of runtime keys (its own connection, not the limiter's).
pub struct RedisKeys {
    client: redis::Client,
    hash: String,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisKeys {
    pub fn new(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("limits.url is not a usable Redis URL: {e}"))?;
        Ok(RedisKeys {
            client,
            hash: format!("{prefix}admin:keys"),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    pub(super) fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn conn(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let mut g = self.conn.lock().await;
        if let Some(c) = &*g {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(
            REDIS_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "Redis: connect timed out".to_string())?
        .map_err(|e| format!("Redis: {e}"))?;
        *g = Some(c.clone());
        Ok(c)
    }

    /// Run one command; a failure drops the connection (the next call reconnects).
    pub(super) async fn run<T>(
        &self,
        f: impl AsyncFnOnce(&mut redis::aio::MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut c = self.conn().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, f(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *self.conn.lock().await = None;
                Err(format!("Redis: {e}"))
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err("Redis: timed out".into())
            }
        }
    }

    async fn load(&self) -> Result<BTreeMap<String, KeyRecord>, String> {
        let hash = self.hash.clone();
        let raw: BTreeMap<String, String> = self.run(async |c| c.hgetall(&hash).await).await?;
        let mut out = BTreeMap::new();
        for (id, v) in raw {
            match serde_json::from_str::<KeyRecord>(&v) {
                Ok(r) => {
                    out.insert(id, r);
                }
                Err(e) => log::warn!("runtime key '{id}' in Redis is unreadable, skipped: {e}"),
            }
        }
        Ok(out)
    }

    async fn save(&self, id: &str, rec: Option<&KeyRecord>) -> Result<(), String> {
        let hash = self.hash.clone();
        match rec {
            Some(r) => {
                let v = serde_json::to_string(r).map_err(|e| e.to_string())?;
                self.run(async |c| c.hset::<_, _, _, ()>(&hash, id, v).await)
                    .await
            }
            None => {
                self.run(async |c| c.hdel::<_, _, ()>(&hash, id).await)
                    .await
            }
        }
    }
}
