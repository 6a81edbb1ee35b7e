//! Reading the mapping folder: the catalog, the department mappings, the code tables and the
//! calendars, each parsed into its file-shaped types with line-located errors. Cross-file checks
//! and compilation happen in `mapping`.
//!
//! ```text
//! mappings/
//!   catalog.toml               one-things, items, fields, materials, results
//!   departments/<id>.toml      one per department system
//!   codes/<table>.toml         code tables
//!   calendar/<year>.toml       holidays and make-up working days
//! ```

pub mod calendar;
pub mod catalog;
pub mod codes;
pub mod department;
pub mod source;
pub mod tree;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use source::{Problem, Problems, SourceFile};

/// The mapping folder as parsed, file by file.
#[derive(Debug)]
pub struct RawConfig {
    pub dir: PathBuf,
    pub catalog: (Arc<SourceFile>, catalog::Catalog),
    pub departments: Vec<(Arc<SourceFile>, department::DepartmentFile)>,
    pub codes: Vec<(Arc<SourceFile>, codes::CodeTable)>,
    pub calendars: Vec<(Arc<SourceFile>, calendar::CalendarFile)>,
}

/// The mapping folder: `--config`, else `$ONETHING_CONFIG`, else `mappings`.
pub fn config_dir(arg: Option<&Path>) -> PathBuf {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ONETHING_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("mappings"))
}

fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, Problem> {
    let rd = std::fs::read_dir(dir).map_err(|e| Problem {
        file: dir.display().to_string(),
        line: 0,
        message: format!("cannot read folder: {e}"),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads and parses every file; problems in one file do not stop the others from being read.
pub fn load(dir: &Path) -> Result<RawConfig, Problems> {
    let mut problems = Problems::default();
    let catalog_path = dir.join("catalog.toml");
    let catalog = SourceFile::read(&catalog_path)
        .and_then(|f| f.parse().map(|c| (f.clone(), c)))
        .map_err(|p| problems.push(p))
        .ok();

    let mut departments = Vec::new();
    let mut codes = Vec::new();
    let mut calendars = Vec::new();

    match toml_files(&dir.join("departments")) {
        Ok(files) => {
            for path in files {
                match SourceFile::read(&path).and_then(|f| f.parse().map(|d| (f.clone(), d))) {
                    Ok(d) => departments.push(d),
                    Err(p) => problems.push(p),
                }
            }
        }
        Err(p) => problems.push(p),
    }
    match toml_files(&dir.join("codes")) {
        Ok(files) => {
            for path in files {
                let parsed = SourceFile::read(&path)
                    .and_then(|f| f.parse::<codes::CodeTableFile>().map(|t| (f.clone(), t)));
                match parsed {
                    Ok((f, t)) => codes.push((
                        f,
                        codes::CodeTable {
                            id: stem(&path),
                            name: t.name,
                            keys: t.keys,
                            default: t.default,
                            codes: t.codes,
                        },
                    )),
                    Err(p) => problems.push(p),
                }
            }
        }
        Err(p) => problems.push(p),
    }
    match toml_files(&dir.join("calendar")) {
        Ok(files) => {
            for path in files {
                match SourceFile::read(&path).and_then(|f| f.parse().map(|c| (f.clone(), c))) {
                    Ok(c) => calendars.push(c),
                    Err(p) => problems.push(p),
                }
            }
        }
        Err(p) => problems.push(p),
    }

    match catalog {
        Some(catalog) if problems.is_empty() => Ok(RawConfig {
            dir: dir.to_path_buf(),
            catalog,
            departments,
            codes,
            calendars,
        }),
        _ => Err(problems),
    }
}
