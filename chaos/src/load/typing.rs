//! What a simulated collaborator types: the mix of edits, the filler text, and the unique token
//! every insert carries so that the loss check can find each acknowledged insert exactly once.
//!
//! A token is two code points from the supplementary private use areas (U+F0000.., U+100000..),
//! which no filler uses. Deletes only remove filler next to the cursor, and inserts never go
//! between a token's two halves, so a token can only disappear or repeat through a server bug.

use chorus_actors::ot::{Component, Op};
use rand::rngs::SmallRng;
use rand::Rng;
use ropey::Rope;

/// Values one half of a token can take (each private use area holds 65 534 usable code points).
const TOKEN_HALF: u64 = 65_534;
/// First code point of a token's first half.
const TOKEN_FIRST: u32 = 0xF_0000;
/// First code point of a token's second half.
const TOKEN_SECOND: u32 = 0x10_0000;
/// Most distinct tokens (about 4.3 billion inserts per run).
pub const MAX_TOKENS: u64 = TOKEN_HALF * TOKEN_HALF;

/// Longest run of filler a delete removes at once.
const MAX_DELETE_CHARS: usize = 8;
/// Size range of a paste, in code points.
const PASTE_CHARS: (usize, usize) = (80, 600);
/// Size range of a word, in code points (a space is added).
const WORD_CHARS: (usize, usize) = (2, 9);

/// Filler: code-like ASCII, plus a few characters of 2, 3 and 4 UTF-8 bytes (code points, not
/// bytes or UTF-16 units, are what positions count).
const FILLER: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'l', 'm', 'n', 'o', 'p', 'r', 's', 't', 'u', 'x',
    'y', '_', '(', ')', '{', '}', ';', '=', '.', ',', '0', '1', '2', 'é', 'λ', '→', '😀',
];

/// Relative weights of the kinds of edit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// One character typed.
    pub chars: u32,
    /// A word typed.
    pub words: u32,
    /// A block of code pasted.
    pub pastes: u32,
    /// A backspace or delete of a few characters.
    pub deletes: u32,
    /// The cursor moved (a `cursor` message, no op).
    pub cursor_moves: u32,
}

impl Mix {
    /// Parses `chars=55,words=20,pastes=2,deletes=18,cursor=5` (missing kinds weigh 0).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            chars: 0,
            words: 0,
            pastes: 0,
            deletes: 0,
            cursor_moves: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not name=weight"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("'{weight}' is not a whole number"))?;
            match name.trim() {
                "chars" | "char" => mix.chars = weight,
                "words" | "word" => mix.words = weight,
                "pastes" | "paste" => mix.pastes = weight,
                "deletes" | "delete" => mix.deletes = weight,
                "cursor" | "cursors" | "moves" => mix.cursor_moves = weight,
                other => {
                    return Err(format!(
                        "unknown edit kind '{other}' (chars, words, pastes, deletes, cursor)"
                    ))
                }
            }
        }
        if mix.chars + mix.words + mix.pastes + mix.deletes == 0 {
            return Err("the mix needs at least one kind of edit with a weight above 0".into());
        }
        Ok(mix)
    }

    fn total(&self) -> u32 {
        self.chars + self.words + self.pastes + self.deletes + self.cursor_moves
    }
}

/// The kind of edit drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Insert this many filler code points, then a token.
    Insert(usize),
    /// Delete up to this many filler code points next to the cursor.
    Delete(usize),
    /// Move the cursor.
    MoveCursor,
}

/// Draws the next action.
pub fn draw(mix: &Mix, rng: &mut SmallRng) -> Action {
    let mut pick = rng.random_range(0..mix.total());
    if pick < mix.chars {
        return Action::Insert(1);
    }
    pick -= mix.chars;
    if pick < mix.words {
        return Action::Insert(rng.random_range(WORD_CHARS.0..=WORD_CHARS.1));
    }
    pick -= mix.words;
    if pick < mix.pastes {
        return Action::Insert(rng.random_range(PASTE_CHARS.0..=PASTE_CHARS.1));
    }
    pick -= mix.pastes;
    if pick < mix.deletes {
        return Action::Delete(rng.random_range(1..=MAX_DELETE_CHARS));
    }
    Action::MoveCursor
}

/// The two code points of token `id`.
pub fn token_chars(id: u64) -> [char; 2] {
    debug_assert!(id < MAX_TOKENS);
    let first = char::from_u32(TOKEN_FIRST + (id / TOKEN_HALF) as u32).unwrap_or('\u{F0000}');
    let second = char::from_u32(TOKEN_SECOND + (id % TOKEN_HALF) as u32).unwrap_or('\u{100000}');
    [first, second]
}

fn is_first_half(c: char) -> bool {
    (TOKEN_FIRST..TOKEN_FIRST + TOKEN_HALF as u32).contains(&(c as u32))
}

fn is_second_half(c: char) -> bool {
    (TOKEN_SECOND..TOKEN_SECOND + TOKEN_HALF as u32).contains(&(c as u32))
}

fn is_token_char(c: char) -> bool {
    is_first_half(c) || is_second_half(c)
}

/// Every token in `text`, in order; a half without its other half is reported as `Err` with the
/// position (a token was split: corruption).
pub fn tokens_in(text: &str) -> Result<Vec<u64>, usize> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().enumerate().peekable();
    while let Some((position, c)) = chars.next() {
        if is_first_half(c) {
            match chars.next() {
                Some((_, d)) if is_second_half(d) => {
                    let id = u64::from(c as u32 - TOKEN_FIRST) * TOKEN_HALF
                        + u64::from(d as u32 - TOKEN_SECOND);
                    tokens.push(id);
                }
                _ => return Err(position),
            }
        } else if is_second_half(c) {
            return Err(position);
        }
    }
    Ok(tokens)
}

/// `n` code points of filler followed by token `id`.
pub fn insert_text(n: usize, id: u64, rng: &mut SmallRng) -> String {
    let mut text = String::with_capacity(n * 2 + 8);
    for i in 0..n {
        // Pastes look like lines of code.
        if n > WORD_CHARS.1 && i % 40 == 39 {
            text.push('\n');
        } else {
            text.push(FILLER[rng.random_range(0..FILLER.len())]);
        }
    }
    if n > 1 && n <= WORD_CHARS.1 {
        text.push(' ');
    }
    text.extend(token_chars(id));
    text
}

/// A position in `text` that is not between a token's two halves (moves right if it is).
pub fn snap(text: &Rope, position: usize) -> usize {
    let position = position.min(text.len_chars());
    if position > 0 && position < text.len_chars() && is_first_half(text.char(position - 1)) {
        position + 1
    } else {
        position
    }
}

/// The op inserting `insert` at `at` in a document of `len` code points.
pub fn insert_op(len: usize, at: usize, insert: String) -> Op {
    let mut components = Vec::with_capacity(2);
    if at > 0 {
        components.push(Component::Retain(at));
    }
    components.push(Component::Insert(insert.into()));
    Op::from_components(components, len).expect("an insert within the document is valid")
}

/// The op deleting up to `n` filler code points before `cursor` (backspace), or after it if there
/// is none before; `None` if the cursor is surrounded by tokens or document edges.
pub fn delete_op(text: &Rope, cursor: usize, n: usize) -> Option<(Op, usize)> {
    let len = text.len_chars();
    let before = (0..n)
        .take_while(|i| cursor > *i && !is_token_char(text.char(cursor - 1 - i)))
        .count();
    let (from, count) = if before > 0 {
        (cursor - before, before)
    } else {
        let after = (0..n)
            .take_while(|i| cursor + i < len && !is_token_char(text.char(cursor + i)))
            .count();
        if after == 0 {
            return None;
        }
        (cursor, after)
    };
    let mut components = Vec::with_capacity(2);
    if from > 0 {
        components.push(Component::Retain(from));
    }
    components.push(Component::Delete(count));
    let op = Op::from_components(components, len).expect("a delete within the document is valid");
    Some((op, from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_round_trip_and_splits_are_found() {
        let mut rng = SmallRng::seed_from_u64(1);
        let ids = [
            0,
            1,
            TOKEN_HALF - 1,
            TOKEN_HALF,
            123_456_789,
            MAX_TOKENS - 1,
        ];
        let text: String = ids.iter().map(|&id| insert_text(3, id, &mut rng)).collect();
        assert_eq!(tokens_in(&text), Ok(ids.to_vec()));
        let [a, _] = token_chars(5);
        assert_eq!(tokens_in(&format!("xy{a}z")), Err(2));
    }

    #[test]
    fn deletes_never_touch_tokens_and_snap_avoids_splitting_one() {
        let mut rng = SmallRng::seed_from_u64(2);
        let text = Rope::from_str(&format!("ab{}cd", insert_text(0, 7, &mut rng)));
        assert_eq!(snap(&text, 3), 4);
        let (op, from) = delete_op(&text, 6, 8).expect("filler before the cursor");
        assert_eq!(from, 4);
        assert_eq!(
            op.apply_to_str(&text.to_string()).map(|t| tokens_in(&t)),
            Ok(Ok(vec![7]))
        );
        assert!(
            delete_op(&text, 4, 3).is_some_and(|(_, from)| from == 4),
            "deletes forward after a token"
        );
        let only_token = Rope::from_str(&insert_text(0, 9, &mut rng));
        assert!(delete_op(&only_token, 2, 3).is_none());
    }

    #[test]
    fn the_mix_parses_and_draws_every_kind() {
        let mix = Mix::parse("chars=1,words=1,pastes=1,deletes=1,cursor=1").expect("valid");
        let mut rng = SmallRng::seed_from_u64(3);
        let drawn: Vec<Action> = (0..500).map(|_| draw(&mix, &mut rng)).collect();
        assert!(drawn.contains(&Action::Insert(1)) && drawn.contains(&Action::MoveCursor));
        assert!(drawn
            .iter()
            .any(|a| matches!(a, Action::Insert(n) if *n >= PASTE_CHARS.0)));
        assert!(drawn.iter().any(|a| matches!(a, Action::Delete(_))));
        assert!(Mix::parse("cursor=3").is_err() && Mix::parse("typos=3").is_err());
    }
}
