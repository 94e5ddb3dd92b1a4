//! The Lua scripts of the Redis store (each runs atomically on the server) and helpers to read the small replies they return.
//!
//! Every script touches only the keys of one document (one hash slot) and reports its outcome as
//! an array whose first element is a status word, so that "refused" (fenced, gap, …) is an
//! answer rather than a server error. Numbers are decimal strings: Lua numbers are doubles, so
//! the store keeps revisions and tokens below 2^53 (see `MAX_SCRIPT_INT` in the parent module)
//! and compares what it can as strings.

use redis::Value;

/// A script's source with its SHA1, for `EVALSHA` (and `SCRIPT LOAD` after `NOSCRIPT`).
#[derive(Debug, Clone)]
pub(super) struct LuaScript {
    /// Name used in error messages.
    pub name: &'static str,
    /// The Lua source.
    pub code: &'static str,
    /// SHA1 of `code` in hex, as Redis names it.
    pub hash: String,
}

impl LuaScript {
    fn new(name: &'static str, code: &'static str) -> LuaScript {
        let hash = redis::Script::new(code).get_hash().to_owned();
        LuaScript { name, code, hash }
    }
}

/// All scripts of the store.
#[derive(Debug, Clone)]
pub(super) struct Scripts {
    /// Compare-and-set of the owner hash, issuing a new token.
    pub claim: LuaScript,
    /// Fenced append of encoded records.
    pub append: LuaScript,
    /// Fenced snapshot write and log trim.
    pub compact: LuaScript,
    /// Fenced hand-back of ownership.
    pub release: LuaScript,
    /// Fenced, bounded, atomic read of snapshot + meta + log.
    pub load: LuaScript,
}

impl Scripts {
    /// Hashes every script.
    pub fn new() -> Scripts {
        Scripts {
            claim: LuaScript::new("claim", CLAIM),
            append: LuaScript::new("append", APPEND),
            compact: LuaScript::new("compact", COMPACT),
            release: LuaScript::new("release", RELEASE),
            load: LuaScript::new("load", LOAD),
        }
    }
}

/// Claim. KEYS: owner. ARGV: expected incarnation ('' = none), expected token ('' = none), our
/// node, our incarnation.
///
/// Succeeds only if the owner hash still holds what the caller read (and judged dead or ours).
/// The new token is max(old + 1, server TIME in µs). A bare counter is not enough: if the
/// primary dies before replicating a claim, the promoted replica still has the older token and
/// `old + 1` would hand out a value that the lost claim already used. Taking the time as a floor
/// makes the new primary's tokens exceed the lost ones as long as the servers' clocks are
/// roughly in sync (the lost claim happened earlier). Appends compare the incarnation as well
/// as the token, so even a repeated token held by a different incarnation is refused.
const CLAIM: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'incarnation', 'token')
local inc = cur[1] or ''
local tok = cur[2] or ''
if inc ~= ARGV[1] or tok ~= ARGV[2] then
  return {'CHANGED'}
end
local old = 0
if tok ~= '' then
  old = tonumber(tok)
  if old == nil or old < 0 or old >= 9007199254740000 then
    return {'BADTOKEN', tok}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new = math.max(old + 1, now)
local s = string.format('%d', new)
redis.call('HSET', KEYS[1], 'node', ARGV[3], 'incarnation', ARGV[4], 'token', s)
return {'OK', s}
"#;

/// Append. KEYS: owner, meta, log. ARGV: incarnation, token, the stored revision this batch must
/// follow, the batch's last revision, then one encoded record per argument.
///
/// Refuses (writing nothing) unless the owner is exactly (incarnation, token) and meta.rev is
/// the expected previous revision; then RPUSHes the records (in slices, because `unpack` has a
/// stack limit) and sets meta.rev (and meta.first for a new document).
const APPEND: &str = r#"
local own = redis.call('HMGET', KEYS[1], 'incarnation', 'token')
if own[1] ~= ARGV[1] or own[2] ~= ARGV[2] then
  return {'FENCED'}
end
local meta = redis.call('HMGET', KEYS[2], 'rev', 'first')
local rev = meta[1] or '0'
if rev ~= ARGV[3] then
  return {'GAP', rev}
end
local n = #ARGV
local i = 5
while i <= n do
  local j = math.min(i + 499, n)
  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, j))
  i = j + 1
end
redis.call('HSET', KEYS[2], 'rev', ARGV[4], 'first', meta[2] or '1')
return {'OK'}
"#;

/// Compact. KEYS: owner, meta, log, snap. ARGV: incarnation, token, snapshot revision,
/// snapshot revision + 1, encoded snapshot.
///
/// Checks the owner, that meta agrees with the list length (first + len - 1 = rev), that the
/// snapshot is not ahead of the log and not older than records already trimmed; then SETs the
/// snapshot, LTRIMs the records up to its revision off the front and sets meta.first.
const COMPACT: &str = r#"
local own = redis.call('HMGET', KEYS[1], 'incarnation', 'token')
if own[1] ~= ARGV[1] or own[2] ~= ARGV[2] then
  return {'FENCED'}
end
local meta = redis.call('HMGET', KEYS[2], 'rev', 'first')
local rev = tonumber(meta[1] or '0')
local first = tonumber(meta[2] or '1')
if rev == nil or first == nil then
  return {'CORRUPT', 'meta holds non-numeric revisions'}
end
local len = redis.call('LLEN', KEYS[3])
if first + len - 1 ~= rev then
  return {'CORRUPT', 'meta (first ' .. (meta[2] or '1') .. ', rev ' .. (meta[1] or '0') .. ') does not match the log length ' .. len}
end
local srev = tonumber(ARGV[3])
if srev > rev then
  return {'AHEAD', meta[1] or '0'}
end
if srev < first - 1 then
  return {'BEHIND', meta[2] or '1'}
end
redis.call('SET', KEYS[4], ARGV[5])
local drop = srev - first + 1
if drop > 0 then
  redis.call('LTRIM', KEYS[3], drop, -1)
end
redis.call('HSET', KEYS[2], 'rev', meta[1] or '0', 'first', ARGV[4])
return {'OK'}
"#;

/// Release. KEYS: owner. ARGV: incarnation, token.
///
/// Clears node and incarnation only if the owner is still exactly (incarnation, token); the
/// token stays as the high-water mark the next claim must exceed.
const RELEASE: &str = r#"
local own = redis.call('HMGET', KEYS[1], 'incarnation', 'token')
if own[1] ~= ARGV[1] or own[2] ~= ARGV[2] then
  return {'FENCED'}
end
redis.call('HDEL', KEYS[1], 'node', 'incarnation')
return {'OK'}
"#;

/// Load. KEYS: owner, meta, log, snap. ARGV: incarnation, token, most records, most bytes.
///
/// Read-only. Checks the owner (so what is loaded is what our token guards), refuses a log with
/// more records or a snapshot + log with more bytes than the limits (so the reply is bounded),
/// and returns meta.rev, meta.first, the snapshot ('' if none) and the whole log in one atomic
/// step.
const LOAD: &str = r#"
local own = redis.call('HMGET', KEYS[1], 'incarnation', 'token')
if own[1] ~= ARGV[1] or own[2] ~= ARGV[2] then
  return {'FENCED'}
end
local meta = redis.call('HMGET', KEYS[2], 'rev', 'first')
local len = redis.call('LLEN', KEYS[3])
if len > tonumber(ARGV[3]) then
  return {'TOOLONG', len}
end
local snap = redis.call('GET', KEYS[4])
local bytes = 0
if snap then
  bytes = #snap
end
local log = redis.call('LRANGE', KEYS[3], 0, -1)
for i = 1, #log do
  bytes = bytes + #log[i]
end
if bytes > tonumber(ARGV[4]) then
  return {'TOOBIG', bytes}
end
return {'OK', meta[1] or '', meta[2] or '', snap or '', log}
"#;

/// A script's reply split into its status word and the rest.
#[derive(Debug)]
pub(super) struct Reply {
    /// The status word (`OK`, `FENCED`, …).
    pub status: String,
    /// The remaining elements.
    pub rest: Vec<Value>,
}

impl Reply {
    /// Reads a reply: an array whose first element is a status word.
    pub fn parse(value: Value) -> Result<Reply, String> {
        let Value::Array(mut items) = value else {
            return Err(format!("expected an array, got {}", describe(&value)));
        };
        if items.is_empty() {
            return Err("expected a status word, got an empty array".to_owned());
        }
        let first = items.remove(0);
        let status = text(&first)
            .ok_or_else(|| format!("expected a status word, got {}", describe(&first)))?
            .to_owned();
        Ok(Reply {
            status,
            rest: items,
        })
    }

    /// Element `index` of the rest as text, or a description of what is there instead.
    pub fn text(&self, index: usize) -> Result<&str, String> {
        let value = self
            .rest
            .get(index)
            .ok_or_else(|| format!("{} reply has no element {}", self.status, index + 1))?;
        text(value).ok_or_else(|| {
            format!(
                "{} reply element {} is {}",
                self.status,
                index + 1,
                describe(value)
            )
        })
    }

    /// Element `index` of the rest as text or an integer, for messages.
    pub fn shown(&self, index: usize) -> String {
        match self.rest.get(index) {
            Some(Value::Int(n)) => n.to_string(),
            Some(value) => text(value).map_or_else(|| describe(value), str::to_owned),
            None => "nothing".to_owned(),
        }
    }
}

/// A text value (bulk or simple string), if `value` is one and is UTF-8.
pub(super) fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Okay => Some("OK"),
        _ => None,
    }
}

/// An optional text value: `None` for nil, an error for anything else that is not text.
pub(super) fn optional_text(value: &Value) -> Result<Option<&str>, String> {
    match value {
        Value::Nil => Ok(None),
        other => text(other)
            .map(Some)
            .ok_or_else(|| format!("expected text or nil, got {}", describe(other))),
    }
}

/// A short description of a value for error messages: its kind and size, never its contents
/// (which may be large or binary), except for short text.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Nil => "nil".to_owned(),
        Value::Int(n) => format!("integer {n}"),
        Value::BulkString(bytes) if bytes.len() <= 64 => match std::str::from_utf8(bytes) {
            Ok(s) => format!("{s:?}"),
            Err(_) => format!("{} binary bytes", bytes.len()),
        },
        Value::BulkString(bytes) => format!("a {}-byte string", bytes.len()),
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::SimpleString(s) if s.len() <= 64 => format!("{s:?}"),
        Value::SimpleString(s) => format!("a {}-byte status", s.len()),
        Value::Okay => "OK".to_owned(),
        Value::ServerError(e) => format!("server error {}", e.code()),
        _ => "an unexpected value type".to_owned(),
    }
}
