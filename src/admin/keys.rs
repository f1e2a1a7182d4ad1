//! Runtime gateway keys (`/admin/keys`): made by aigate, shown once, kept as
//! their sha256. `auth` looks them up after the config's keys; they live
//! apart from the config snapshot, so a reload keeps them, and in a store
//! (`admin::store`) so a restart, an upgrade and other nodes see them.

use super::store::{Backend, KeyRecord};
use crate::auth::GatewayKey;
use once_cell::sync::OnceCell;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// `null` clears a setting, leaving it out keeps it (PATCH).
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A POST or PATCH body: the settings of a key (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// POST only: the id (default: generated).
    pub id: Option<String>,
    #[serde(default, deserialize_with = "some")]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "some")]
    pub rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some")]
    pub tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some")]
    pub max_concurrent: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some")]
    pub budget_usd_daily: Option<Option<f64>>,
    #[serde(default, deserialize_with = "some")]
    pub budget_usd_monthly: Option<Option<f64>>,
    pub disabled: Option<bool>,
}

impl Changes {
    /// Apply to `r`, checking each value; the message names the field.
    pub fn apply(&self, r: &mut KeyRecord) -> Result<(), String> {
        if let Some(m) = &self.models {
            for g in m.iter().flatten() {
                globset::Glob::new(g).map_err(|e| format!("models: bad glob '{g}': {e}"))?;
            }
            r.models = m.clone();
        }
        for (name, change, slot) in [
            ("rpm", self.rpm, &mut r.rpm),
            ("tpm", self.tpm, &mut r.tpm),
            ("max_concurrent", self.max_concurrent, &mut r.max_concurrent),
        ] {
            if let Some(v) = change {
                if v == Some(0) {
                    return Err(format!("{name}: must be at least 1 (null for no limit)"));
                }
                *slot = v;
            }
        }
        for (name, change, slot) in [
            (
                "budget_usd_daily",
                self.budget_usd_daily,
                &mut r.budget_usd_daily,
            ),
            (
                "budget_usd_monthly",
                self.budget_usd_monthly,
                &mut r.budget_usd_monthly,
            ),
        ] {
            if let Some(v) = change {
                if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                    return Err(format!(
                        "{name}: must be an amount in USD greater than 0 (null for no budget)"
                    ));
                }
                *slot = v;
            }
        }
        if let Some(d) = self.disabled {
            r.disabled = d;
        }
        Ok(())
    }
}

impl KeyRecord {
    fn compile(&self) -> Option<GatewayKey> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut sha256).ok()?;
        Some(GatewayKey::new(
            &self.id,
            sha256,
            self.models.as_deref(),
            [self.rpm, self.tpm, self.max_concurrent],
            [self.budget_usd_daily, self.budget_usd_monthly],
        ))
    }
}

pub struct Keys {
    backend: Backend,
    records: Mutex<BTreeMap<String, KeyRecord>>,
    /// One write at a time (store, then memory).
    write: tokio::sync::Mutex<()>,
}

static KEYS: OnceCell<Keys> = OnceCell::new();
/// The store, once `admin::start` made it.
pub fn get() -> Option<&'static Keys> {
    KEYS.get()
}

pub fn install(backend: Backend, records: BTreeMap<String, KeyRecord>) -> &'static Keys {
    let k = KEYS.get_or_init(|| Keys {
        backend,
        records: Mutex::new(BTreeMap::new()),
        write: tokio::sync::Mutex::new(()),
    });
    k.replace(records);
    k
}

/// `sk-aigate-` and 192 random bits, hex.
fn generate() -> String {
    format!("sk-aigate-{}", hex::encode(rand::random::<[u8; 24]>()))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A refused key operation: status and message.
pub type Refused = (u16, String);

impl Keys {
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    fn replace(&self, records: BTreeMap<String, KeyRecord>) {
        let live: HashMap<_, _> = records
            .values()
            .filter(|r| !r.disabled)
            .filter_map(|r| r.compile().map(|k| (k.sha256, Arc::new(k))))
            .collect();
        crate::auth::set_runtime_keys(live);
        *self.records.lock().unwrap_or_else(|e| e.into_inner()) = records;
    }

    pub fn list(&self) -> Vec<KeyRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn one(&self, id: &str) -> Option<KeyRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Store `rec` (or remove `id`), then serve it.
    async fn commit(&self, id: &str, rec: Option<KeyRecord>) -> Result<(), Refused> {
        let mut all = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match &rec {
            Some(r) => all.insert(id.to_string(), r.clone()),
            None => all.remove(id),
        };
        self.backend
            .save(id, rec.as_ref(), &all)
            .await
            .map_err(|e| (503, format!("the key store failed, nothing changed: {e}")))?;
        self.replace(all);
        Ok(())
    }

    /// A new key; returns it with the key itself (shown this once).
    pub async fn create(
        &self,
        c: &Changes,
        config_ids: &[&str],
        by: &str,
    ) -> Result<(KeyRecord, String), Refused> {
        let _w = self.write.lock().await;
        let id = match &c.id {
            Some(id) if !valid_id(id) => {
                return Err((400, "id: 1-64 letters, digits, '-', '_' or '.'".into()));
            }
            Some(id) => id.clone(),
            None => format!("key-{}", hex::encode(rand::random::<[u8; 4]>())),
        };
        if config_ids.contains(&id.as_str()) || self.one(&id).is_some() {
            return Err((409, format!("a key with id '{id}' exists")));
        }
        let secret = generate();
        let mut r = KeyRecord {
            id: id.clone(),
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            models: None,
            rpm: None,
            tpm: None,
            max_concurrent: None,
            budget_usd_daily: None,
            budget_usd_monthly: None,
            disabled: false,
            created_ms: crate::limits::store::unix_ms(),
            created_by: by.to_string(),
        };
        c.apply(&mut r).map_err(|e| (400, e))?;
        self.commit(&id, Some(r.clone())).await?;
        Ok((r, secret))
    }

    pub async fn update(&self, id: &str, c: &Changes) -> Result<KeyRecord, Refused> {
        let _w = self.write.lock().await;
        if c.id.is_some() {
            return Err((400, "id: a key's id cannot change".into()));
        }
        let mut r = self
            .one(id)
            .ok_or_else(|| (404, format!("no runtime key '{id}'")))?;
        c.apply(&mut r).map_err(|e| (400, e))?;
        self.commit(id, Some(r.clone())).await?;
        Ok(r)
    }

    pub async fn delete(&self, id: &str) -> Result<(), Refused> {
        let _w = self.write.lock().await;
        if self.one(id).is_none() {
            return Err((404, format!("no runtime key '{id}'")));
        }
        self.commit(id, None).await
    }

    /// Re-read a shared store (other nodes' changes); true when it changed.
    pub async fn refresh(&self) -> Result<bool, String> {
        let _w = self.write.lock().await;
        let fresh = self.backend.load().await?;
        let same = *self.records.lock().unwrap_or_else(|e| e.into_inner()) == fresh;
        if !same {
            self.replace(fresh);
        }
        Ok(!same)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_null_clears_absent_keeps() {
        let mut r: KeyRecord = serde_json::from_value(serde_json::json!({
            "id": "a", "sha256": "00", "rpm": 5, "models": ["gpt-*"]
        }))
        .unwrap();
        let c: Changes = serde_json::from_str(r#"{"rpm": null, "tpm": 9}"#).unwrap();
        c.apply(&mut r).unwrap();
        assert_eq!((r.rpm, r.tpm), (None, Some(9)));
        assert_eq!(r.models.as_deref(), Some(&["gpt-*".to_string()][..]));
        for bad in [
            r#"{"rpm": 0}"#,
            r#"{"budget_usd_daily": -1}"#,
            r#"{"models": ["a["]}"#,
        ] {
            let c: Changes = serde_json::from_str(bad).unwrap();
            assert!(c.apply(&mut r.clone()).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Changes>(r#"{"rpn": 1}"#).is_err());
        assert!(valid_id("team-a.1") && !valid_id("a b") && !valid_id(""));
        let k = generate();
        assert!(k.starts_with("sk-aigate-") && k.len() == 10 + 48);
    }
}
