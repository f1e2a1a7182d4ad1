//! The request log on disk (`admin.request_log_persist`): one JSON line per
//! finished request (the ring's fields, never a prompt or a key), appended
//! by one writer thread fed through a bounded channel, so a slow disk never
//! slows a request (a full channel drops the entry and counts it). Read back
//! at start; pruned to the retention and the ring's size at start and then
//! whenever the file holds twice the ring or its oldest line is too old (at
//! most once a minute for age; rewritten to a temp file, renamed over it).

use super::requests::Entry;
use once_cell::sync::Lazy;
use prometheus::IntCounter;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// Entries waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Entries written per `write` at most.
const BATCH: usize = 256;
/// How often the writer checks the retention while idle.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

static DROPPED: Lazy<IntCounter> = Lazy::new(|| {
    let c = IntCounter::new(
        "aigate_admin_request_log_dropped_total",
        "Request log entries not written to the log file (writer queue full or write failed)",
    )
    .expect("metric");
    let _ = crate::metrics::METRICS
        .registry
        .register(Box::new(c.clone()));
    c
});

/// Where and how long.
#[derive(Debug, Clone)]
pub struct Conf {
    pub path: PathBuf,
    pub retention_ms: u64,
    /// The ring's size: more lines than this are never read back.
    pub keep: usize,
}

/// What a read of the file found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Within the retention, the newest `keep`, oldest first.
    pub entries: Vec<Entry>,
    /// Lines that were not an entry (a torn write, a hand edit).
    pub corrupt: usize,
    /// Lines in the file.
    pub lines: usize,
}

/// Read the file (missing: empty). Unreadable lines are skipped and counted.
pub fn read(c: &Conf, now_ms: u64) -> std::io::Result<Loaded> {
    let f = match File::open(&c.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(e),
    };
    let oldest = now_ms.saturating_sub(c.retention_ms);
    let mut out = Loaded::default();
    let mut keep: VecDeque<Entry> = VecDeque::new();
    for line in BufReader::new(f).split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.lines += 1;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(e) if e.time_ms >= oldest => {
                if keep.len() == c.keep {
                    keep.pop_front();
                }
                keep.push_back(e);
            }
            Ok(_) => {}
            Err(_) => out.corrupt += 1,
        }
    }
    out.entries = keep.into();
    Ok(out)
}

/// Replace the file with `entries` (temp file, fsync, rename; mode 0600).
pub fn rewrite(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| {
        let mut f =
            private(OpenOptions::new().write(true).create(true).truncate(true)).open(&tmp)?;
        let mut buf = Vec::with_capacity(entries.len() * 320);
        for e in entries {
            line(&mut buf, e);
        }
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn private(o: &mut OpenOptions) -> &mut OpenOptions {
    o.mode(0o600)
}

fn line(buf: &mut Vec<u8>, e: &Entry) {
    if serde_json::to_writer(&mut *buf, e).is_ok() {
        buf.push(b'\n');
    }
}

/// Read, prune and rewrite the file at start: the entries to put back in
/// the ring. A corrupt line is skipped with a warning; an unreadable file
/// is reported and the log starts empty (the requests are served anyway).
pub fn load(c: &Conf, now_ms: u64) -> Vec<Entry> {
    let l = match read(c, now_ms) {
        Ok(l) => l,
        Err(e) => {
            log::warn!(
                "request log: cannot read {}: {e}; starting empty",
                c.path.display()
            );
            return vec![];
        }
    };
    if l.corrupt > 0 {
        log::warn!(
            "request log: {} unreadable line(s) in {} skipped",
            l.corrupt,
            c.path.display()
        );
    }
    if l.lines != l.entries.len()
        && let Err(e) = rewrite(&c.path, &l.entries)
    {
        log::warn!("request log: cannot prune {}: {e}", c.path.display());
    }
    l.entries
}

/// The sending side: cheap, never blocks.
pub struct Writer {
    tx: SyncSender<Arc<Entry>>,
}

impl Writer {
    /// Start the writer thread, appending to `c.path` (which holds `lines`
    /// lines, the oldest from `oldest_ms`).
    pub fn start(c: Conf, lines: usize, oldest_ms: Option<u64>) -> Writer {
        Lazy::force(&DROPPED);
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("aigate-request-log".into())
            .spawn(move || {
                Appender {
                    c,
                    file: None,
                    lines,
                    oldest_ms,
                    aged_at: std::time::Instant::now(),
                }
                .run(rx)
            });
        if let Err(e) = spawned {
            log::warn!("request log: cannot start its writer: {e}; not persisted");
        }
        Writer { tx }
    }

    pub fn send(&self, e: Arc<Entry>) {
        match self.tx.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => DROPPED.inc(),
        }
    }
}

struct Appender {
    c: Conf,
    file: Option<(File, u64)>,
    lines: usize,
    oldest_ms: Option<u64>,
    /// The last prune for age: at most one a minute (a tenth of a short
    /// retention), else a steady flow would rewrite the file at every write.
    aged_at: std::time::Instant,
}

impl Appender {
    fn run(mut self, rx: Receiver<Arc<Entry>>) {
        let mut buf = Vec::new();
        let mut failing = false;
        loop {
            let first = match rx.recv_timeout(PRUNE_EVERY) {
                Ok(e) => Some(e),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            buf.clear();
            let mut n = 0;
            let mut next = first;
            while let Some(e) = next {
                n += 1;
                self.oldest_ms.get_or_insert(e.time_ms);
                line(&mut buf, &e);
                next = if n < BATCH { rx.try_recv().ok() } else { None };
            }
            if n > 0 {
                match self.append(&buf) {
                    Ok(()) => {
                        self.lines += n;
                        if failing {
                            failing = false;
                            log::info!("request log: writing {} again", self.c.path.display());
                        }
                    }
                    Err(e) => {
                        self.file = None;
                        DROPPED.inc_by(n as u64);
                        if !failing {
                            failing = true;
                            log::warn!(
                                "request log: cannot write {}: {e}; entries dropped from the file",
                                self.c.path.display()
                            );
                        }
                    }
                }
            }
            self.maybe_prune(crate::limits::store::unix_ms());
        }
    }

    /// Append to the file, reopening it when it was replaced (pruned by
    /// this process or, during a binary upgrade, by the other one).
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let current = std::fs::metadata(&self.c.path).ok().map(|m| m.ino());
        if self.file.as_ref().map(|f| f.1) != current || current.is_none() {
            let f = private(OpenOptions::new().append(true).create(true)).open(&self.c.path)?;
            let ino = f.metadata()?.ino();
            self.file = Some((f, ino));
        }
        let (f, _) = self.file.as_mut().expect("opened");
        f.write_all(buf)
    }

    fn maybe_prune(&mut self, now_ms: u64) {
        let gap = PRUNE_EVERY.min(Duration::from_millis(self.c.retention_ms / 10));
        let too_old = self
            .oldest_ms
            .is_some_and(|t| t < now_ms.saturating_sub(self.c.retention_ms))
            && self.aged_at.elapsed() >= gap;
        if !too_old && self.lines <= 2 * self.c.keep {
            return;
        }
        let kept = read(&self.c, now_ms).and_then(|l| {
            rewrite(&self.c.path, &l.entries)?;
            Ok(l.entries)
        });
        self.aged_at = std::time::Instant::now();
        match kept {
            Ok(kept) => {
                self.lines = kept.len();
                self.oldest_ms = kept.first().map(|e| e.time_ms);
                self.file = None;
            }
            Err(e) => {
                log::warn!("request log: cannot prune {}: {e}", self.c.path.display());
                // Try again at the next check rather than after every entry.
                self.lines = 0;
                self.oldest_ms = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::requests::entry;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aigate-reqlog-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn conf(dir: &Path, keep: usize) -> Conf {
        Conf {
            path: dir.join("log.jsonl"),
            retention_ms: 10_000,
            keep,
        }
    }

    fn at(t: u64, model: &str) -> Entry {
        let mut e = entry("k", model, 200, 1.0);
        e.time_ms = t;
        e
    }

    #[test]
    fn read_skips_corrupt_and_old_lines_and_keeps_the_newest() {
        let dir = tempdir("read");
        let c = conf(&dir, 2);
        let mut text = Vec::new();
        for (t, m) in [(1_000, "old"), (50_000, "a"), (51_000, "b"), (52_000, "c")] {
            line(&mut text, &at(t, m));
        }
        text.extend_from_slice(b"{\"seq\": 1, truncated\n\n");
        std::fs::write(&c.path, &text).unwrap();
        let l = read(&c, 55_000).unwrap();
        assert_eq!(l.corrupt, 1);
        assert_eq!(l.lines, 5);
        let models: Vec<_> = l.entries.iter().map(|e| e.model.clone().unwrap()).collect();
        assert_eq!(models, ["b", "c"], "newest two within the retention");
        assert_eq!(l.entries[0].ingress, "openai-chat");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_prunes_the_file_and_keeps_it_private() {
        let dir = tempdir("load");
        let c = conf(&dir, 10);
        let mut text = Vec::new();
        line(&mut text, &at(1_000, "old"));
        line(&mut text, &at(50_000, "new"));
        std::fs::write(&c.path, &text).unwrap();
        let got = load(&c, 55_000);
        assert_eq!(got.len(), 1);
        let again = read(&c, 55_000).unwrap();
        assert_eq!(
            (again.lines, again.corrupt),
            (1, 0),
            "old line gone from the file"
        );
        let mode = std::fs::metadata(&c.path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(load(&conf(&dir.join("none"), 1), 0).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
