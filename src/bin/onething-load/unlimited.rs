//! `--unlimited`: the gateway's own capacity, without the departments' documented limits. The
//! reference mappings are copied with every department's rate limits dropped, its concurrency
//! raised and its poll interval shortened, and the simulators run with `ONETHING_SIM_LIMITS=off`.
//! Under the documents, police alone caps `newborn` at about one case a second (60 queries a
//! minute, one needed per hukou); this measures what the gateway could do if it did not.

use std::path::Path;

/// Requests at once per department in the copy.
const CONCURRENCY: u32 = 32;
/// Poll interval in the copy (unconnected departments are asked this often about open items).
const POLL_INTERVAL: &str = "1s";

/// One department file with its limits lifted: in `[limits]` no `per_second` and `concurrency`
/// raised; in `[poll]` no `per_minute` and a short `interval`. Everything else as it was.
pub fn lift(text: &str) -> String {
    let mut section = String::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.trim().to_string();
        }
        let key = line.split('=').next().unwrap_or("").trim();
        let replaced = match (section.as_str(), key) {
            ("[limits]", "per_second") | ("[poll]", "per_minute") => None,
            ("[limits]", "concurrency") => Some(format!("concurrency = {CONCURRENCY}")),
            ("[poll]", "interval") => Some(format!("interval = \"{POLL_INTERVAL}\"")),
            _ => Some(line.to_string()),
        };
        if let Some(l) = replaced {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Copies the mapping folder `from` to `to`, lifting every department's limits.
pub fn copy_lifted(from: &Path, to: &Path) -> Result<(), String> {
    let e = |p: &Path, x: std::io::Error| format!("{}: {x}", p.display());
    std::fs::create_dir_all(to).map_err(|x| e(to, x))?;
    for entry in std::fs::read_dir(from).map_err(|x| e(from, x))? {
        let entry = entry.map_err(|x| e(from, x))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_lifted(&src, &dst)?;
        } else if src.parent().and_then(Path::file_name) == Some("departments".as_ref())
            && src.extension() == Some("toml".as_ref())
        {
            let text = std::fs::read_to_string(&src).map_err(|x| e(&src, x))?;
            std::fs::write(&dst, lift(&text)).map_err(|x| e(&dst, x))?;
        } else {
            std::fs::copy(&src, &dst).map_err(|x| e(&src, x))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_limits_and_the_poll_interval_change() {
        let police = "id = \"police\"\n[limits]\nconcurrency = 2\nper_second = 20\ntimeout = \"15s\"\n\n\
                      [poll]\ninterval = \"1m\"\nper_minute = 60\n\n[request]\ninterval = \"x\"\n";
        assert_eq!(
            lift(police),
            "id = \"police\"\n[limits]\nconcurrency = 32\ntimeout = \"15s\"\n\n\
             [poll]\ninterval = \"1s\"\n\n[request]\ninterval = \"x\"\n"
        );
    }
}
