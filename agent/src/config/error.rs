//! The one error type of configuration: it names where, what, and the fix.

use super::Origin;

/// A configuration problem, pointing at the file, line and key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub origin: String,
    pub line: Option<usize>,
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(origin: &Origin, line: Option<usize>, key: &str, problem: &str, fix: &str) -> Self {
        ConfigError {
            origin: origin.to_string(),
            line,
            key: key.to_string(),
            problem: problem.to_string(),
            fix: fix.to_string(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: ", self.origin, l)?,
            None => write!(f, "{}: ", self.origin)?,
        }
        write!(f, "`{}`: {}\n  fix: {}", self.key, self.problem, self.fix)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}
