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
    /// `key` and `problem` may quote the document (a TOML type error quotes
    /// the value, a key is read off the line), so any URL in them is redacted
    /// here, whatever field it was written in.
    pub fn new(origin: &Origin, line: Option<usize>, key: &str, problem: &str, fix: &str) -> Self {
        ConfigError {
            origin: origin.to_string(),
            line,
            key: redact_urls(key),
            problem: redact_urls(problem),
            fix: fix.to_string(),
        }
    }
}

/// `redact_url` applied to every word of `text` that holds "://"; words end
/// at whitespace and at the quotes messages put around values.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    // The sentinel at the end closes the last word.
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '`') {
            let word = &text[start..i];
            if word.contains("://") {
                out.push_str(&super::redact_url(word));
            } else {
                out.push_str(word);
            }
            if i < text.len() {
                out.push(c);
            }
            start = i + c.len_utf8();
        }
    }
    out
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
