//! The file exchange (前置机 folder): request files written atomically into `outbox/`, answer files
//! read from `inbox/` and filed into `inbox/done/` or `inbox/error/` (nothing is ever deleted).
//! Instances sharing the folder take an answer by renaming it under `inbox/.taking/<instance>/`
//! first, so each answer is read by one of them.
//! Names starting with `.` are files still being written, by either side, and are never read.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` as `dir/name` atomically: a `.`-prefixed temporary name, fsync, rename, fsync
/// dir. A reader never sees a partial file under `name`. `dir` must exist.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{name}` is not a plain file name"),
        ));
    }
    let temp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        hex::encode(rand::random::<[u8; 6]>())
    ));
    if let Err(e) = write_then_rename(&temp, &dir.join(name), bytes) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

fn write_then_rename(temp: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(temp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(temp, target)
}

/// Answer files waiting in `inbox` (names not starting with `.`, regular files), in name order.
pub fn pending_answers(inbox: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(inbox)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // An entry that vanished meanwhile (taken by someone else) is simply not pending.
        match entry.file_type() {
            Ok(t) if t.is_file() => found.push(entry.path()),
            _ => {}
        }
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found)
}

/// Files an answer that was stored into `inbox/done/` (same name), creating the folder.
pub fn file_done(path: &Path) -> std::io::Result<()> {
    let (inbox, _) = split(path)?;
    file_into(&inbox, path, "done").map(|_| ())
}

/// Files an unreadable answer into `inbox/error/` with `<name>.reason` beside it.
pub fn file_error(path: &Path, reason: &str) -> std::io::Result<()> {
    let (inbox, _) = split(path)?;
    file_error_in(&inbox, path, reason)
}

fn file_error_in(inbox: &Path, path: &Path, reason: &str) -> std::io::Result<()> {
    let (_, name) = split(path)?;
    let error = inbox.join("error");
    fs::create_dir_all(&error)?;
    let target = free_name(&error, &name);
    let target_name = target.file_name().unwrap_or_default().to_string_lossy();
    // The reason first: after a crash in between, the answer is still in the inbox and is filed
    // again (the reason rewritten), never an answer in `error/` without its reason.
    let mut text = reason.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_atomic(&error, &format!("{target_name}.reason"), text.as_bytes())?;
    fs::rename(path, &target)?;
    sync_dir(&error)?;
    sync_dir(inbox)
}

/// Where an instance keeps the answer files it is reading: `inbox/.taking/<instance>/`.
fn taking(inbox: &Path, instance: &str) -> PathBuf {
    inbox.join(".taking").join(instance)
}

/// An answer file one instance has taken out of the inbox (moved under `.taking/<instance>/`, an
/// atomic rename), so that no other instance sharing the folder reads it meanwhile.
pub struct Taken {
    inbox: PathBuf,
    pub path: PathBuf,
}

impl Taken {
    /// Takes `path` from `inbox` for `instance`; `None` if another instance took it first.
    pub fn take(inbox: &Path, path: &Path, instance: &str) -> std::io::Result<Option<Taken>> {
        let (_, name) = split(path)?;
        let dir = taking(inbox, instance);
        fs::create_dir_all(&dir)?;
        let target = dir.join(&name);
        match fs::rename(path, &target) {
            Ok(()) => Ok(Some(Taken {
                inbox: inbox.to_path_buf(),
                path: target,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Files it into `inbox/done/`.
    pub fn done(&self) -> std::io::Result<()> {
        file_into(&self.inbox, &self.path, "done").map(|_| ())
    }

    /// Files it into `inbox/error/` with its reason.
    pub fn error(&self, reason: &str) -> std::io::Result<()> {
        file_error_in(&self.inbox, &self.path, reason)
    }

    /// Puts it back in the inbox (not stored: it is read again).
    pub fn give_back(&self) -> std::io::Result<()> {
        let (_, name) = split(&self.path)?;
        fs::rename(&self.path, self.inbox.join(name))
    }
}

/// Puts back into `inbox` the files `instance` had taken (at its start: a crash left them), and
/// those any instance took longer than `stale` ago (it died). Returns how many.
pub fn give_back_taken(
    inbox: &Path,
    instance: &str,
    stale: std::time::Duration,
) -> std::io::Result<usize> {
    let root = inbox.join(".taking");
    let Ok(owners) = fs::read_dir(&root) else {
        return Ok(0);
    };
    let mut n = 0;
    for owner in owners.flatten() {
        let mine = owner.file_name() == instance;
        let Ok(files) = fs::read_dir(owner.path()) else {
            continue;
        };
        for f in files.flatten() {
            // A rename sets the change time: how long ago the file was taken.
            let taken_for = f
                .metadata()
                .ok()
                .and_then(|m| {
                    use std::os::unix::fs::MetadataExt;
                    let at =
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.ctime() as u64);
                    at.elapsed().ok()
                })
                .unwrap_or_default();
            if (mine || taken_for > stale)
                && fs::rename(f.path(), inbox.join(f.file_name())).is_ok()
            {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Whether a request file is still in `outbox` (not taken yet).
pub fn still_waiting(outbox: &Path, name: &str) -> bool {
    fs::symlink_metadata(outbox.join(name)).is_ok()
}

/// Moves `path` into the subfolder `sub` of `inbox`; returns the new path.
fn file_into(inbox: &Path, path: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let (from, name) = split(path)?;
    let dest = inbox.join(sub);
    fs::create_dir_all(&dest)?;
    let target = free_name(&dest, &name);
    fs::rename(path, &target)?;
    sync_dir(&dest)?;
    sync_dir(&from)?;
    Ok(target)
}

/// The folder and the name of a file.
fn split(path: &Path) -> std::io::Result<(PathBuf, String)> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// `dir/name`, or `dir/name.1`, `dir/name.2`, … when a file of that name was filed before (the
/// same answer delivered twice): nothing filed is ever overwritten.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if fs::symlink_metadata(&first).is_err() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| fs::symlink_metadata(p).is_err())
        .unwrap_or(first)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
