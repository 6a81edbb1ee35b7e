//! The file exchange (前置机 folder): request files written atomically into `outbox/`, answer files
//! read from `inbox/` and filed into `inbox/done/` or `inbox/error/` (nothing is ever deleted).
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
    file_into(path, "done").map(|_| ())
}

/// Files an unreadable answer into `inbox/error/` with `<name>.reason` beside it.
pub fn file_error(path: &Path, reason: &str) -> std::io::Result<()> {
    let (inbox, name) = split(path)?;
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
    sync_dir(&inbox)
}

/// Whether a request file is still in `outbox` (not taken yet).
pub fn still_waiting(outbox: &Path, name: &str) -> bool {
    fs::symlink_metadata(outbox.join(name)).is_ok()
}

/// Moves `path` into the subfolder `sub` of its folder; returns the new path.
fn file_into(path: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let (inbox, name) = split(path)?;
    let dest = inbox.join(sub);
    fs::create_dir_all(&dest)?;
    let target = free_name(&dest, &name);
    fs::rename(path, &target)?;
    sync_dir(&dest)?;
    sync_dir(&inbox)?;
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
