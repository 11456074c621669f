//! The data directory: sled's files, opened with errors an operator can act
//! on, and a marker that tells a pool that lived here from a fresh start.
//!
//! sled takes a log whose first segment is unreadable for the end of the
//! log: a damaged or missing `db` opens as an empty database, and a pool
//! would start again from nothing (new secret, empty books) without a word.
//! The marker file `POOL`, written once the first start has built the pool
//! (with a key of the same name in sled's default tree), says a pool lived
//! here; a database without that key beside it is refused. (A key, not
//! "any data": with its books in PostgreSQL, a pool keeps only the devnet
//! chain in sled, empty until the first block.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The marker's name inside the data directory, and its key in sled.
pub const MARKER: &str = "POOL";

/// Why the data directory cannot be used (each says what to do).
#[derive(Debug, thiserror::Error)]
pub enum DataDirectoryError {
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    #[error("cannot create {path}: {message}")]
    Create { path: String, message: String },
    #[error("{path} is in use by another process (a vision-coordinator already runs on it)")]
    InUse { path: String },
    #[error("cannot open the database in {path}: {message}")]
    Open { path: String, message: String },
    #[error(
        "the database in {db} is empty, but {marker} says a pool lived here: its books are missing or \
         unreadable. Restore the directory from a backup (docs/OPERATIONS.md, section 4); to start a new \
         pool here on purpose, remove {marker}"
    )]
    Emptied { db: String, marker: String },
    #[error("cannot write {path}: {message}")]
    Marker { path: String, message: String },
}

/// A data directory, created if missing (readable by its owner only: the
/// database holds the pool's secret and session keys).
#[derive(Debug, Clone)]
pub struct DataDirectory {
    dir: PathBuf,
    /// Whether the marker was there when it was opened.
    marked: bool,
}

impl DataDirectory {
    pub fn prepare(dir: &Path) -> Result<Self, DataDirectoryError> {
        let path = dir.display().to_string();
        if dir.exists() && !dir.is_dir() {
            return Err(DataDirectoryError::NotADirectory { path });
        }
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| DataDirectoryError::Create { path, message: e.to_string() })?;
        }
        Ok(DataDirectory { dir: dir.to_path_buf(), marked: dir.join(MARKER).exists() })
    }

    /// Opens sled in `db/` with a page cache of `cache_bytes`; refuses an
    /// empty database where the marker says a pool lived.
    pub fn open_sled(&self, cache_bytes: u64) -> Result<sled::Db, DataDirectoryError> {
        let path = self.dir.join("db");
        let shown = path.display().to_string();
        let config = sled::Config::new().path(&path).cache_capacity(cache_bytes);
        let db = open_waiting_for_lock(&config).map_err(|e| match e {
            sled::Error::Io(io) if is_lock_failure(&io) => {
                DataDirectoryError::InUse { path: self.dir.display().to_string() }
            }
            other => DataDirectoryError::Open { path: shown.clone(), message: other.to_string() },
        })?;
        // (A read error counts as present: refusing is for a database that
        // opened and is missing what it had. One that holds data but not the
        // key was marked by a build that wrote the file alone: kept, and
        // `mark` adds the key.)
        if self.marked && db.get(MARKER).is_ok_and(|key| key.is_none()) && is_empty(&db) {
            return Err(DataDirectoryError::Emptied { db: shown, marker: self.dir.join(MARKER).display().to_string() });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.dir).map_or(0, |m| m.permissions().mode());
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} is readable by others (mode {:o}): it holds the pool's secret; chmod 700 it",
                    self.dir.display(),
                    mode & 0o777
                );
            }
        }
        Ok(db)
    }

    /// Notes that a pool lives here, in sled (flushed) and beside it (once
    /// the pool is built).
    pub fn mark(&self, db: &sled::Db) -> Result<(), DataDirectoryError> {
        let path = self.dir.join(MARKER);
        let failed = |e: &dyn std::fmt::Display| DataDirectoryError::Marker {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if db.get(MARKER).map_err(|e| failed(&e))?.is_none() {
            db.insert(MARKER, &b"1"[..]).map_err(|e| failed(&e))?;
            db.flush().map_err(|e| failed(&e))?;
        }
        if self.marked {
            return Ok(());
        }
        let text = "A vision-coordinator pool's data directory. While this file is here, an empty database\n\
                    in db/ is refused at start (its books went missing); remove it only to start afresh.\n";
        std::fs::write(&path, text)
            .map_err(|e| DataDirectoryError::Marker { path: path.display().to_string(), message: e.to_string() })
    }
}

/// Whether `db` holds nothing at all (no tree with a key, the default one
/// included; `tree_names` lists only trees that exist).
fn is_empty(db: &sled::Db) -> bool {
    db.tree_names().iter().all(|name| db.open_tree(name).is_ok_and(|tree| tree.is_empty()))
}

/// How long opening sled waits for its file lock. Dropping a `Db` does not
/// let go of the lock at once (sled's flusher thread holds it a moment
/// longer, spacejam/sled#1289), so a process reopening what it has just
/// closed must wait; one held by another process is refused after this.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens `config`, waiting up to `LOCK_WAIT` for sled's file lock.
pub fn open_waiting_for_lock(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(io)) if is_lock_failure(&io) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Whether sled failed to take its file lock (sled words the failure
/// itself; the kind is not always kept).
fn is_lock_failure(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vision-data-dir-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_marked_directory_refuses_an_emptied_database() {
        let dir = scratch("emptied");
        let data = DataDirectory::prepare(&dir).unwrap();
        let db = data.open_sled(1 << 20).unwrap();
        data.mark(&db).unwrap();
        drop(db);
        // An empty pool otherwise (its books elsewhere, no block yet) starts again.
        let db = DataDirectory::prepare(&dir).unwrap().open_sled(1 << 20).unwrap();
        // Marked by the file alone (an earlier build) with its books: kept.
        db.remove(MARKER).unwrap();
        db.insert("books", &b"1"[..]).unwrap();
        db.flush().unwrap();
        drop(db);
        DataDirectory::prepare(&dir).unwrap().open_sled(1 << 20).unwrap();
        // The books go missing (a volume not mounted, a damaged log).
        std::fs::remove_dir_all(dir.join("db")).unwrap();
        let again = DataDirectory::prepare(&dir).unwrap();
        let err = again.open_sled(1 << 20).unwrap_err();
        assert!(matches!(err, DataDirectoryError::Emptied { .. }), "{err}");
        // Removing the marker is how a new pool starts there on purpose.
        std::fs::remove_file(dir.join(MARKER)).unwrap();
        DataDirectory::prepare(&dir).unwrap().open_sled(1 << 20).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A lock let go a moment after the open began (as sled's flusher does
    /// after a drop) is waited for, not reported as another opener.
    #[test]
    fn an_open_waits_for_a_lock_let_go_a_moment_later() {
        let dir = scratch("lock-wait");
        let data = DataDirectory::prepare(&dir).unwrap();
        let held = data.open_sled(1 << 20).unwrap();
        let started = Instant::now();
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        data.open_sled(1 << 20).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited: {:?}", started.elapsed());
        letting_go.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_opener_and_a_file_are_told_apart_from_other_failures() {
        let dir = scratch("in-use");
        let data = DataDirectory::prepare(&dir).unwrap();
        let held = data.open_sled(1 << 20).unwrap();
        let err = data.open_sled(1 << 20).unwrap_err();
        assert!(matches!(err, DataDirectoryError::InUse { .. }), "{err}");
        drop(held);
        let file = dir.join("a-file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(DataDirectory::prepare(&file), Err(DataDirectoryError::NotADirectory { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "the owner's alone");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
