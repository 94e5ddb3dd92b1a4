//! Property tests of the OT core on random documents (astral and combining chars) and random ops.
//!
//! Each test prints its seed (shown when it fails); rerun one with `OT_SEED=<seed>`; `OT_CASES`
//! sets the number of cases. proptest shrinks a failure to a minimal document and op before
//! reporting it.

use chorus_actors::ot::{
    transform_position, transform_range, Component, Op, OpError, RawComponent, RawOp, MAX_COMPONENT,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use ropey::Rope;

/// Cases per property by default (`OT_CASES=<n>` overrides): enough to hit ties, overlapping
/// deletes and empty documents often, while the whole file stays within seconds.
const CASES: u32 = 1_000;

/// A private-use char that the generators never produce, used as a cursor marker.
const MARKER: char = '\u{E000}';

/// The proptest config: seed from `OT_SEED` or the clock, printed so a failure can be replayed.
fn config() -> Config {
    let seed = std::env::var("OT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64)
        });
    eprintln!("proptest seed: OT_SEED={seed}");
    let cases = std::env::var("OT_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Chars that make code-point counting matter: ASCII, a combining acute, astral emoji and music
/// symbols, a precomposed é, line breaks.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range('a', 'e'),
        1 => Just('\u{301}'),
        1 => Just('😀'),
        1 => Just('𝄞'),
        1 => Just('é'),
        1 => Just('\n'),
        1 => Just('\r'),
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 0..40).prop_map(|chars| chars.into_iter().collect())
}

fn insert_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 1..5).prop_map(|chars| chars.into_iter().collect())
}

/// One step of a random op before it is fitted to a document.
#[derive(Debug, Clone)]
enum Step {
    Retain(usize),
    Delete(usize),
    Insert(String),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        (1usize..8).prop_map(Step::Retain),
        (1usize..8).prop_map(Step::Delete),
        insert_text().prop_map(Step::Insert),
    ];
    prop::collection::vec(step, 0..8)
}

/// Fits random steps to a document of `base_len` code points and returns the wire components
/// (no trailing retain needed): retains and deletes are clipped to what remains.
fn fit(steps: &[Step], base_len: usize) -> Vec<Component> {
    let mut remaining = base_len;
    let mut components = Vec::with_capacity(steps.len());
    for step in steps {
        match step {
            Step::Retain(n) | Step::Delete(n) => {
                let n = (*n).min(remaining);
                if n == 0 {
                    continue;
                }
                remaining -= n;
                components.push(match step {
                    Step::Retain(_) => Component::Retain(n),
                    _ => Component::Delete(n),
                });
            }
            Step::Insert(text) => components.push(Component::Insert(text.as_str().into())),
        }
    }
    components
}

/// A valid op built from random steps on a document of `base_len` code points.
fn op_on(steps: &[Step], base_len: usize) -> Op {
    let components = fit(steps, base_len);
    if components.is_empty() {
        return Op::identity(base_len);
    }
    Op::from_components(components, base_len).expect("fitted components are valid")
}

fn len(text: &str) -> usize {
    text.chars().count()
}

/// The first `n` code points of `text`, and the rest.
fn split(text: &str, n: usize) -> (String, String) {
    (
        text.chars().take(n).collect(),
        text.chars().skip(n).collect(),
    )
}

/// A component that from_raw must refuse, with the error it must give.
fn invalid_component() -> impl Strategy<Value = (RawComponent, OpError)> {
    prop_oneof![
        Just((RawComponent::Retain(0), OpError::ZeroLength)),
        Just((RawComponent::Delete(0), OpError::ZeroLength)),
        Just((
            RawComponent::Insert(Default::default()),
            OpError::ZeroLength
        )),
        Just((
            RawComponent::Invalid(OpError::NotAnInteger),
            OpError::NotAnInteger
        )),
        (MAX_COMPONENT + 1..=u64::MAX).prop_map(|n| (RawComponent::Retain(n), OpError::TooLong)),
        (MAX_COMPONENT + 1..=u64::MAX).prop_map(|n| (RawComponent::Delete(n), OpError::TooLong)),
    ]
}

/// Random JSON element text for the wire decoder, valid or not.
fn json_element() -> impl Strategy<Value = String> {
    prop_oneof![
        (-50i64..50).prop_map(|n| n.to_string()),
        insert_text().prop_map(|text| serde_json::to_string(&text).expect("a string serializes")),
        Just(r#""""#.to_owned()),
        Just("1.5".to_owned()),
        Just("1.0".to_owned()),
        Just("1e2".to_owned()),
        Just("-0".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("{}".to_owned()),
        Just(r#"{"a":[1,"b"]}"#.to_owned()),
        Just("[1]".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("-9223372036854775808".to_owned()),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// TP1: both orders of two concurrent ops converge, and transform_over agrees with transform.
    #[test]
    fn transform_converges(doc in document(), a in steps(), b in steps()) {
        let first = op_on(&a, len(&doc));
        let second = op_on(&b, len(&doc));
        let (first_prime, second_prime) = Op::transform(&first, &second).unwrap();
        prop_assert_eq!(first_prime.base_len(), second.target_len());
        prop_assert_eq!(second_prime.base_len(), first.target_len());
        prop_assert_eq!(first_prime.target_len(), second_prime.target_len());
        let via_first = second_prime.apply_to_str(&first.apply_to_str(&doc).unwrap()).unwrap();
        let via_second = first_prime.apply_to_str(&second.apply_to_str(&doc).unwrap()).unwrap();
        prop_assert_eq!(&via_first, &via_second);
        prop_assert_eq!(second.transform_over(&first).unwrap(), second_prime);
        // Rebasing over the identity changes nothing.
        prop_assert_eq!(first.transform_over(&Op::identity(len(&doc))).unwrap(), first);
    }

    /// Tie rule: with inserts at one position (each maybe followed by a delete), the insert of
    /// the op the server applied first ends up left.
    #[test]
    fn first_applied_insert_goes_left(
        doc in document(),
        at in 0usize..40,
        x in insert_text(),
        y in insert_text(),
        delete_first in 0usize..5,
        delete_second in 0usize..5,
    ) {
        let n = len(&doc);
        let at = at.min(n);
        let delete_first = delete_first.min(n - at);
        let delete_second = delete_second.min(n - at);
        let build = |text: &str, delete: usize| {
            let mut components = Vec::new();
            if at > 0 {
                components.push(Component::Retain(at));
            }
            components.push(Component::Insert(text.into()));
            if delete > 0 {
                components.push(Component::Delete(delete));
            }
            Op::from_components(components, n).unwrap()
        };
        let first = build(&x, delete_first);
        let second = build(&y, delete_second);
        let (first_prime, second_prime) = Op::transform(&first, &second).unwrap();
        let (head, _) = split(&doc, at);
        let (_, tail) = split(&doc, at + delete_first.max(delete_second));
        let expected = format!("{head}{x}{y}{tail}");
        prop_assert_eq!(
            second_prime.apply_to_str(&first.apply_to_str(&doc).unwrap()).unwrap(),
            expected.clone()
        );
        prop_assert_eq!(first_prime.apply_to_str(&second.apply_to_str(&doc).unwrap()).unwrap(), expected);
    }

    /// Composing two ops gives what applying them in sequence gives; composition is associative.
    #[test]
    fn compose_is_apply_in_sequence(doc in document(), a in steps(), b in steps(), c in steps()) {
        let first = op_on(&a, len(&doc));
        let second = op_on(&b, first.target_len());
        let third = op_on(&c, second.target_len());
        let middle = first.apply_to_str(&doc).unwrap();
        let end = second.apply_to_str(&middle).unwrap();
        let composed = first.compose(&second).unwrap();
        prop_assert_eq!(composed.base_len(), first.base_len());
        prop_assert_eq!(composed.target_len(), second.target_len());
        prop_assert_eq!(composed.apply_to_str(&doc).unwrap(), end);
        let left = composed.compose(&third).unwrap();
        let right = first.compose(&second.compose(&third).unwrap()).unwrap();
        prop_assert_eq!(left, right);
    }

    /// The client/server loop converges: the server rebases an incoming op over each op it
    /// applied since the op's base, in turn; the client, holding that op unacknowledged,
    /// rebases each incoming server op over it. (Rebasing over the composition of the applied
    /// ops instead is not equivalent: an insert inside text they deleted can land elsewhere.)
    #[test]
    fn client_and_server_converge(doc in document(), a in steps(), b in steps(), c in steps()) {
        let applied_one = op_on(&a, len(&doc));
        let applied_two = op_on(&b, applied_one.target_len());
        let pending = op_on(&c, len(&doc));
        // Server: applied_one, applied_two, then the incoming op rebased over both in turn.
        let rebased = pending.transform_over(&applied_one).unwrap().transform_over(&applied_two).unwrap();
        let server = rebased
            .apply_to_str(&applied_two.apply_to_str(&applied_one.apply_to_str(&doc).unwrap()).unwrap())
            .unwrap();
        // Client: its pending op, then each server op rebased over what it holds.
        let (one_prime, pending_prime) = Op::transform(&applied_one, &pending).unwrap();
        let (two_prime, _) = Op::transform(&applied_two, &pending_prime).unwrap();
        let client = two_prime
            .apply_to_str(&one_prime.apply_to_str(&pending.apply_to_str(&doc).unwrap()).unwrap())
            .unwrap();
        prop_assert_eq!(server, client);
    }

    /// Validated ops apply to a rope without error, as to a string, and survive the wire.
    #[test]
    fn validated_ops_apply_and_round_trip(doc in document(), a in steps()) {
        let n = len(&doc);
        let op = op_on(&a, n);
        let expected = op.apply_to_str(&doc).unwrap();
        prop_assert_eq!(len(&expected), op.target_len());
        let mut rope = Rope::from_str(&doc);
        op.apply(&mut rope).unwrap();
        prop_assert_eq!(rope.to_string(), expected);
        // The wire text decodes to the same op (except the empty-document identity, `[]`).
        let wire = serde_json::to_string(&op).unwrap();
        let raw: RawOp = serde_json::from_str(&wire).unwrap();
        if n == 0 && op.is_noop() {
            prop_assert_eq!(Op::from_raw(raw, n), Err(OpError::Empty));
        } else {
            prop_assert_eq!(Op::from_raw(raw, n).unwrap(), op.clone());
        }
        // Typed components, explicit or without their trailing retain, give the same op.
        if !op.components().is_empty() {
            prop_assert_eq!(Op::from_components(op.components().to_vec(), n).unwrap(), op.clone());
        }
        if !op.wire_components().is_empty() {
            prop_assert_eq!(Op::from_components(op.wire_components().to_vec(), n).unwrap(), op);
        }
    }

    /// from_raw refuses any op with one invalid component, with that component's error.
    #[test]
    fn from_raw_refuses_invalid_components(
        doc_len in 0usize..40,
        a in steps(),
        (invalid, expected) in invalid_component(),
        index in 0usize..10,
    ) {
        let mut raw: Vec<RawComponent> = fit(&a, doc_len)
            .into_iter()
            .map(|component| match component {
                Component::Retain(n) => RawComponent::Retain(n as u64),
                Component::Delete(n) => RawComponent::Delete(n as u64),
                Component::Insert(text) => RawComponent::Insert(text),
            })
            .collect();
        let index = index.min(raw.len());
        raw.insert(index, invalid);
        prop_assert_eq!(Op::from_raw(RawOp(raw.into()), doc_len), Err(expected));
    }

    /// from_raw refuses any op that reaches past the end of its base document.
    #[test]
    fn from_raw_refuses_reach_past_end(
        doc_len in 0usize..40,
        a in steps(),
        beyond in 1u64..10,
        delete in any::<bool>(),
        tail in steps(),
    ) {
        let mut raw: Vec<RawComponent> = Vec::new();
        let mut reach = 0;
        for component in fit(&a, doc_len) {
            raw.push(match component {
                Component::Retain(n) => { reach += n; RawComponent::Retain(n as u64) }
                Component::Delete(n) => { reach += n; RawComponent::Delete(n as u64) }
                Component::Insert(text) => RawComponent::Insert(text),
            });
        }
        let over = (doc_len - reach) as u64 + beyond;
        raw.push(if delete { RawComponent::Delete(over) } else { RawComponent::Retain(over) });
        // Whatever follows, the error is the first overreach.
        raw.extend(fit(&tail, 100).into_iter().map(|component| match component {
            Component::Retain(n) => RawComponent::Retain(n as u64),
            Component::Delete(n) => RawComponent::Delete(n as u64),
            Component::Insert(text) => RawComponent::Insert(text),
        }));
        prop_assert_eq!(
            Op::from_raw(RawOp(raw.into()), doc_len),
            Err(OpError::PastEnd { reach: doc_len + beyond as usize, base_len: doc_len })
        );
    }

    /// Random JSON arrays never fail to decode, and validate exactly when every element is a
    /// non-zero integer or a non-empty string and the reach fits.
    #[test]
    fn decoding_random_json_never_fails(doc_len in 0usize..40, elements in prop::collection::vec(json_element(), 0..8)) {
        let json = format!("[{}]", elements.join(","));
        let raw: RawOp = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(raw.0.len(), elements.len());
        let values: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let mut reach: u64 = 0;
        let mut valid = !values.is_empty();
        for value in &values {
            match value {
                serde_json::Value::Number(number) if number.is_i64() && number.as_i64() != Some(0) => {
                    reach = reach.saturating_add(number.as_i64().map_or(0, i64::unsigned_abs));
                }
                serde_json::Value::String(text) if !text.is_empty() => {}
                _ => valid = false,
            }
        }
        // Lengths beyond MAX_COMPONENT fail too; the generated ones are all far below or far above.
        valid &= reach <= doc_len as u64;
        let result = Op::from_raw(raw, doc_len);
        prop_assert_eq!(result.is_ok(), valid, "{} on {} code points: {:?}", json, doc_len, result);
    }

    /// A cursor lands where a marker inserted at it by a later op would: after inserts at its
    /// position, at the start of a delete around it; always within the target, and in order.
    #[test]
    fn cursors_follow_a_marker(doc in document(), a in steps(), at in 0usize..40, other in 0usize..40) {
        let n = len(&doc);
        let op = op_on(&a, n);
        let at = at.min(n);
        let moved = transform_position(at, &op);
        prop_assert!(moved <= op.target_len());
        // The op the server applied first wins the tie, so the marker ends after its inserts.
        let mut marker_components = Vec::new();
        if at > 0 {
            marker_components.push(Component::Retain(at));
        }
        marker_components.push(Component::Insert(MARKER.to_string().into()));
        let marker = Op::from_components(marker_components, n).unwrap();
        let rebased = marker.transform_over(&op).unwrap();
        let text = rebased.apply_to_str(&op.apply_to_str(&doc).unwrap()).unwrap();
        let expected = text.chars().position(|c| c == MARKER).unwrap();
        prop_assert_eq!(moved, expected);
        let other = other.min(n);
        let other_moved = transform_position(other, &op);
        prop_assert!(at > other || moved <= other_moved, "cursors keep their order");
        prop_assert_eq!(transform_range((at, other), &op), (moved, other_moved));
    }

    /// A cursor exactly at an insert's position ends right after the inserted text.
    #[test]
    fn cursor_at_an_insert_ends_after_it(doc in document(), at in 0usize..40, x in insert_text(), tail in steps()) {
        let n = len(&doc);
        let at = at.min(n);
        let mut components = Vec::new();
        if at > 0 {
            components.push(Component::Retain(at));
        }
        components.push(Component::Insert(x.as_str().into()));
        components.extend(fit(&tail, n - at));
        let op = Op::from_components(components, n).unwrap();
        prop_assert!(transform_position(at, &op) >= at + len(&x));
        // Exactly after it, unless the rest of the op inserts at the same position too (an
        // insert before the next retain, even after a delete, is at that position).
        let same_position_insert = fit(&tail, n - at)
            .iter()
            .take_while(|component| !matches!(component, Component::Retain(_)))
            .any(|component| matches!(component, Component::Insert(_)));
        if !same_position_insert {
            prop_assert_eq!(transform_position(at, &op), at + len(&x));
        }
    }
}
