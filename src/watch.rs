//! `watch_config: true`: notice that the config file changed and reload it the
//! way SIGHUP does (`server::Reloader` runs both).
//!
//! A poll of the path's identity once a second, not inotify (the `notify`
//! crate): a poll follows the *path*, so a file replaced by rename (editors,
//! atomic deploys, Kubernetes ConfigMap symlink swaps) keeps being watched
//! with nothing to re-arm, it costs one stat() a second, and it adds no
//! dependency. A change is taken once it has held still for `SETTLE`, so an
//! editor's write-then-rename sequence reloads once.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How often an unchanged file is looked at.
pub const POLL: Duration = Duration::from_secs(1);
/// How long a change must hold still before it is read.
pub const SETTLE: Duration = Duration::from_millis(250);

/// What identifies one version of the file (following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// None when the file cannot be read (missing, e.g. between a delete and a create).
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the file now (it changed and held still).
    Reload,
    /// Look again after this long.
    Wait(Duration),
}

/// The debounce: which version was last read, and a change being watched settle.
#[derive(Debug)]
pub struct Watch {
    read: Option<FileStamp>,
    settling: Option<FileStamp>,
}

impl Watch {
    pub fn new(read: Option<FileStamp>) -> Watch {
        Watch {
            read,
            settling: None,
        }
    }

    /// The file was just read (by this watch or a SIGHUP), as it was stamped
    /// right before reading: a version read once is not reloaded again, even
    /// when it was rejected.
    pub fn was_read(&mut self, stamp: Option<FileStamp>) {
        self.read = stamp;
        self.settling = None;
    }

    /// One look at the file.
    pub fn observe(&mut self, now: Option<FileStamp>) -> Step {
        match now {
            _ if now == self.read => {
                self.settling = None;
                Step::Wait(POLL)
            }
            // Gone (mid-replacement, or deleted): wait for a file to read.
            None => {
                self.settling = None;
                Step::Wait(POLL)
            }
            Some(_) if self.settling == now => {
                self.settling = None;
                Step::Reload
            }
            Some(s) => {
                self.settling = Some(s);
                Step::Wait(SETTLE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, mtime: i128) -> Option<FileStamp> {
        Some(FileStamp {
            dev: 1,
            ino,
            size: 10,
            mtime_ns: mtime,
            ctime_ns: mtime,
        })
    }

    #[test]
    fn unchanged_file_is_polled_slowly() {
        let mut w = Watch::new(stamp(1, 1));
        assert_eq!(w.observe(stamp(1, 1)), Step::Wait(POLL));
        assert_eq!(w.observe(stamp(1, 1)), Step::Wait(POLL));
    }

    #[test]
    fn a_change_is_read_once_it_holds_still() {
        let mut w = Watch::new(stamp(1, 1));
        assert_eq!(w.observe(stamp(1, 2)), Step::Wait(SETTLE));
        assert_eq!(w.observe(stamp(1, 2)), Step::Reload);
        w.was_read(stamp(1, 2));
        assert_eq!(w.observe(stamp(1, 2)), Step::Wait(POLL));
    }

    #[test]
    fn a_burst_of_writes_and_a_rename_reload_once() {
        // An editor: truncate + write in place, then write a temp file and
        // rename it over the original (new inode); then it holds still.
        let mut w = Watch::new(stamp(1, 1));
        let seq = [stamp(1, 2), stamp(1, 3), stamp(2, 4), stamp(2, 4)];
        let reloads: Vec<_> = seq.iter().map(|s| w.observe(*s)).collect();
        assert_eq!(
            reloads,
            vec![
                Step::Wait(SETTLE),
                Step::Wait(SETTLE),
                Step::Wait(SETTLE),
                Step::Reload
            ]
        );
        w.was_read(stamp(2, 4));
        // Replaced by rename again: the path is still watched.
        assert_eq!(w.observe(stamp(3, 5)), Step::Wait(SETTLE));
        assert_eq!(w.observe(stamp(3, 5)), Step::Reload);
    }

    #[test]
    fn a_missing_file_is_waited_for() {
        let mut w = Watch::new(stamp(1, 1));
        assert_eq!(w.observe(None), Step::Wait(POLL));
        assert_eq!(w.observe(None), Step::Wait(POLL));
        assert_eq!(w.observe(stamp(2, 2)), Step::Wait(SETTLE));
        assert_eq!(w.observe(stamp(2, 2)), Step::Reload);
    }

    #[test]
    fn a_version_read_by_sighup_is_not_read_again() {
        let mut w = Watch::new(stamp(1, 1));
        assert_eq!(w.observe(stamp(1, 2)), Step::Wait(SETTLE));
        w.was_read(stamp(1, 2)); // SIGHUP came first
        assert_eq!(w.observe(stamp(1, 2)), Step::Wait(POLL));
    }

    #[test]
    fn stamps_follow_the_path_across_a_rename() {
        let dir = std::env::temp_dir().join(format!("aigate-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yaml");
        std::fs::write(&p, b"a: 1\n").unwrap();
        let before = FileStamp::of(&p);
        assert!(before.is_some());
        assert_eq!(FileStamp::of(&p), before);
        let tmp = dir.join("c.yaml.tmp");
        std::fs::write(&tmp, b"a: 1\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_ne!(FileStamp::of(&p), before, "a new inode at the same path");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(FileStamp::of(&p), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
