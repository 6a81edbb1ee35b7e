//! Mapping files as text: where they came from, and turning byte offsets into line numbers so that
//! every configuration problem can be reported as `FILE:LINE: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One mapping file, kept whole so that spans can be turned into lines.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the configurer knows it (relative to the working directory when possible).
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Arc<Self> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Arc::new(SourceFile {
            path,
            text,
            line_starts,
        })
    }

    pub fn read(path: &Path) -> Result<Arc<Self>, Problem> {
        let text = std::fs::read_to_string(path).map_err(|e| Problem {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Ok(Self::new(path.to_path_buf(), text))
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// A problem located at `span` in this file.
    pub fn problem(&self, span: &Range<usize>, message: impl Into<String>) -> Problem {
        Problem {
            file: self.path.display().to_string(),
            line: self.line_of(span.start),
            message: message.into(),
        }
    }

    /// Parses the file as TOML into `T`, reporting syntax and shape errors with their line.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Problem> {
        toml::from_str(&self.text).map_err(|e| {
            let line = e.span().map(|s| self.line_of(s.start)).unwrap_or(0);
            Problem {
                file: self.path.display().to_string(),
                line,
                message: e.message().trim().to_string(),
            }
        })
    }
}

/// A configuration problem: `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based; 0 for the file as a whole (missing, unreadable, or a year's calendar not there).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            line => write!(f, "{}:{line}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for Problem {}

/// All problems found while loading or checking a configuration.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Sorted by file and line, the order a configurer reads them in.
    pub fn sorted(mut self) -> Vec<Problem> {
        self.0
            .sort_by(|a, b| (a.file.as_str(), a.line).cmp(&(b.file.as_str(), b.line)));
        self.0.dedup();
        self.0
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::Problem;

    #[test]
    fn a_problem_names_its_line_or_only_its_file() {
        let p = |line| Problem {
            file: "mappings/calendar/2027.toml".into(),
            line,
            message: "missing".into(),
        };
        assert_eq!(p(3).to_string(), "mappings/calendar/2027.toml:3: missing");
        assert_eq!(p(0).to_string(), "mappings/calendar/2027.toml: missing");
    }
}
