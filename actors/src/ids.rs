//! Identifiers that come from outside: document ids and client ids, validated once at the edge.

use std::fmt;
use std::sync::Arc;

/// Longest document id PROTOCOL.md allows, in characters.
pub const MAX_DOC_ID_LEN: usize = 256;

/// A validated document id: 1–256 characters from `A-Z a-z 0-9 . _ - /`, `/`-separated segments,
/// each non-empty and neither `.` nor `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(Arc<str>);

/// Why a document id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocIdError {
    /// The id is empty or longer than 256 characters.
    #[error("document id must be 1-256 characters long (got {0})")]
    Length(usize),
    /// A character outside `A-Z a-z 0-9 . _ - /`.
    #[error("document id contains {0:?}; allowed are A-Z a-z 0-9 . _ - /")]
    Character(char),
    /// An empty, `.` or `..` segment (leading, trailing or doubled `/`).
    #[error("document id has an empty, '.' or '..' path segment")]
    Segment,
}

impl DocId {
    /// Validates `id` per PROTOCOL.md.
    pub fn parse(id: &str) -> Result<DocId, DocIdError> {
        let len = id.chars().count();
        if len == 0 || len > MAX_DOC_ID_LEN {
            return Err(DocIdError::Length(len));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
        {
            return Err(DocIdError::Character(bad));
        }
        if id.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(DocIdError::Segment);
        }
        Ok(DocId(Arc::from(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The language Monaco and the language servers use for this document, from its extension.
    pub fn language(&self) -> &'static str {
        language_for_path(&self.0)
    }
}

/// Maps a file name's extension to a Monaco language id; `plaintext` when unknown.
pub fn language_for_path(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return "plaintext",
    };
    match ext.as_str() {
        "rs" => "rust",
        "ts" | "tsx" => "typescript",
        "js" | "jsx" | "mjs" | "cjs" => "javascript",
        "py" => "python",
        "go" => "go",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" => "cpp",
        "java" => "java",
        "json" => "json",
        "md" | "markdown" => "markdown",
        "html" | "htm" => "html",
        "css" => "css",
        "toml" => "toml",
        "yaml" | "yml" => "yaml",
        "sh" | "bash" => "shell",
        "sql" => "sql",
        "rb" => "ruby",
        "kt" | "kts" => "kotlin",
        "swift" => "swift",
        "cs" => "csharp",
        "php" => "php",
        "lua" => "lua",
        "xml" => "xml",
        _ => "plaintext",
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({:?})", &*self.0)
    }
}

/// Length of a client id in hex characters: 128 random bits.
pub const CLIENT_ID_HEX_LEN: usize = 32;

/// A client id: 128 random bits written as 32 lowercase hex characters, issued by the server.
///
/// Carries a hash of its text, keyed by a per-process random seed and computed once: documents
/// look a client up in their exactly-once tables on every op, and `Hash` then feeds that one
/// word to the table's own (also randomly seeded) hasher instead of 32 bytes. Without the seed
/// nobody outside can choose ids that collide.
#[derive(Clone)]
pub struct ClientId {
    text: Arc<str>,
    hash: u64,
}

/// The per-process key of [`ClientId`]'s cached hash.
fn client_id_hasher() -> &'static foldhash::quality::RandomState {
    static STATE: std::sync::OnceLock<foldhash::quality::RandomState> = std::sync::OnceLock::new();
    STATE.get_or_init(foldhash::quality::RandomState::default)
}

impl ClientId {
    fn new(text: Arc<str>) -> ClientId {
        use std::hash::BuildHasher;
        let hash = client_id_hasher().hash_one(&*text);
        ClientId { text, hash }
    }

    /// A fresh, unguessable id from the operating system's CSPRNG (via `rand`'s thread RNG).
    pub fn generate() -> ClientId {
        let bits: [u8; 16] = rand::random();
        ClientId::new(Arc::from(hex::encode(bits)))
    }

    /// Accepts an id a client sends back to resume; `None` if it cannot be one we issued.
    pub fn parse(id: &str) -> Option<ClientId> {
        let ok = id.len() == CLIENT_ID_HEX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| ClientId::new(Arc::from(id)))
    }

    /// Builds an id from stored or test data without the hex-format check.
    pub fn from_stored(id: &str) -> ClientId {
        ClientId::new(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Compares the shared allocation first: a document compares the same client's id (cloned from
/// its session) several times per op.
impl PartialEq for ClientId {
    fn eq(&self, other: &ClientId) -> bool {
        Arc::ptr_eq(&self.text, &other.text) || (self.hash == other.hash && self.text == other.text)
    }
}

impl Eq for ClientId {}

impl std::hash::Hash for ClientId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for ClientId {
    fn partial_cmp(&self, other: &ClientId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By text, like the ids themselves (snapshots list clients in this order).
impl Ord for ClientId {
    fn cmp(&self, other: &ClientId) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({})", &*self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_follow_the_protocol() {
        for ok in [
            "a",
            "src/main.rs",
            "A-b_c.d/e",
            &"x".repeat(256),
            "..a/b..",
            ".hidden",
        ] {
            assert!(DocId::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(DocId::parse(""), Err(DocIdError::Length(0)));
        assert_eq!(DocId::parse(&"x".repeat(257)), Err(DocIdError::Length(257)));
        assert_eq!(DocId::parse("a b"), Err(DocIdError::Character(' ')));
        assert_eq!(DocId::parse("é"), Err(DocIdError::Character('é')));
        for bad in ["/a", "a/", "a//b", ".", "..", "a/./b", "a/../b"] {
            assert_eq!(DocId::parse(bad), Err(DocIdError::Segment), "{bad}");
        }
    }

    #[test]
    fn languages_come_from_extensions() {
        assert_eq!(
            DocId::parse("src/main.rs").map(|d| d.language()),
            Ok("rust")
        );
        assert_eq!(language_for_path("README"), "plaintext");
        assert_eq!(language_for_path("a.PY"), "python");
    }

    #[test]
    fn client_ids_are_128_bit_hex() {
        let id = ClientId::generate();
        assert_eq!(id.as_str().len(), CLIENT_ID_HEX_LEN);
        assert!(ClientId::parse(id.as_str()).is_some());
        assert!(ClientId::parse("nothex").is_none());
        assert_ne!(ClientId::generate(), ClientId::generate());
        // Equal by content as well as by allocation.
        assert_eq!(ClientId::from_stored(id.as_str()), id);
        assert_eq!(id.clone(), id);
        let state = std::collections::hash_map::RandomState::new();
        use std::hash::BuildHasher;
        assert_eq!(
            state.hash_one(ClientId::from_stored(id.as_str())),
            state.hash_one(&id),
            "equal ids hash alike"
        );
        let (a, b) = (ClientId::from_stored("a"), ClientId::from_stored("b"));
        assert!(a < b && a != b);
    }
}
