//! Unit tests of the OT module: validation, normalisation, apply, compose, transform, cursors, wire.

use ropey::Rope;

use super::{transform_position, transform_range, Component, Op, OpError, RawComponent, RawOp};
use Component::{Delete, Insert, Retain};

/// Decodes a wire op from JSON text and validates it against `base_len`.
fn parse(json: &str, base_len: usize) -> Result<Op, OpError> {
    let raw: RawOp = serde_json::from_str(json).expect("test JSON must be an array");
    Op::from_raw(raw, base_len)
}

fn insert(text: &str) -> Component {
    Insert(text.into())
}

#[test]
fn rejects_every_malformed_class() {
    let cases: &[(&str, OpError)] = &[
        ("[]", OpError::Empty),
        ("[0]", OpError::ZeroLength),
        // serde_json hands "-0" over as the float -0.0.
        ("[-0]", OpError::NotAnInteger),
        (r#"[""]"#, OpError::ZeroLength),
        (r#"[1, ""]"#, OpError::ZeroLength),
        ("[1.5]", OpError::NotAnInteger),
        ("[1.0]", OpError::NotAnInteger),
        ("[-1.0]", OpError::NotAnInteger),
        ("[1e2]", OpError::NotAnInteger),
        ("[1E0]", OpError::NotAnInteger),
        ("[true]", OpError::NotAnInteger),
        ("[false]", OpError::NotAnInteger),
        ("[null]", OpError::NotAnInteger),
        ("[{}]", OpError::NotAnInteger),
        (r#"[{"a": [1, {"b": 2}]}]"#, OpError::NotAnInteger),
        ("[[1]]", OpError::NotAnInteger),
        ("[[]]", OpError::NotAnInteger),
        (r#"[1, "x", 2.5]"#, OpError::NotAnInteger),
        ("[1099511627777]", OpError::TooLong),
        ("[-1099511627777]", OpError::TooLong),
        ("[9223372036854775807]", OpError::TooLong),
        ("[-9223372036854775808]", OpError::TooLong),
        ("[18446744073709551615]", OpError::TooLong),
        // Beyond 64 bits serde_json hands the number over as a float.
        ("[18446744073709551616]", OpError::NotAnInteger),
        ("[-99999999999999999999999]", OpError::NotAnInteger),
        (
            "[4]",
            OpError::PastEnd {
                reach: 4,
                base_len: 3,
            },
        ),
        (
            "[-4]",
            OpError::PastEnd {
                reach: 4,
                base_len: 3,
            },
        ),
        (
            "[2, -2]",
            OpError::PastEnd {
                reach: 4,
                base_len: 3,
            },
        ),
        (
            r#"["abc", 3, 1]"#,
            OpError::PastEnd {
                reach: 4,
                base_len: 3,
            },
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(parse(json, 3).as_ref(), Err(expected), "op {json}");
    }
}

#[test]
fn raw_op_accepts_only_arrays() {
    for json in ["{}", "1", r#""abc""#, "null", "true", r#"{"op": [1]}"#] {
        assert!(
            serde_json::from_str::<RawOp>(json).is_err(),
            "{json} must not decode"
        );
    }
    // Malformed JSON inside the array is still a serde error.
    assert!(serde_json::from_str::<RawOp>("[1,]").is_err());
    assert!(serde_json::from_str::<RawOp>(r#"["\ud800"]"#).is_err());
}

#[test]
fn raw_op_decodes_every_element_kind() {
    let raw: RawOp =
        serde_json::from_str(r#"[3, -2, "é", 0, 1.5, true, null, [1], {"k": 1}]"#).unwrap();
    assert_eq!(
        raw.0.into_vec(),
        vec![
            RawComponent::Retain(3),
            RawComponent::Delete(2),
            RawComponent::Insert("é".into()),
            RawComponent::Retain(0),
            RawComponent::Invalid(OpError::NotAnInteger),
            RawComponent::Invalid(OpError::NotAnInteger),
            RawComponent::Invalid(OpError::NotAnInteger),
            RawComponent::Invalid(OpError::NotAnInteger),
            RawComponent::Invalid(OpError::NotAnInteger),
        ]
    );
}

#[test]
fn from_components_rejects_like_from_raw() {
    assert_eq!(Op::from_components(vec![], 0), Err(OpError::Empty));
    assert_eq!(
        Op::from_components(vec![Retain(0)], 3),
        Err(OpError::ZeroLength)
    );
    assert_eq!(
        Op::from_components(vec![Delete(0)], 3),
        Err(OpError::ZeroLength)
    );
    assert_eq!(
        Op::from_components(vec![insert("")], 3),
        Err(OpError::ZeroLength)
    );
    assert_eq!(
        Op::from_components(vec![Retain(1 << 41)], usize::MAX),
        Err(OpError::TooLong)
    );
    assert_eq!(
        Op::from_components(vec![Retain(2), Delete(2)], 3),
        Err(OpError::PastEnd {
            reach: 4,
            base_len: 3
        })
    );
}

#[test]
fn normalises_merges_and_orders() {
    let normalized = parse(r#"[1, 1, -1, -1, "a", "b", -1, 1]"#, 6).unwrap();
    assert_eq!(
        normalized.components(),
        &[Retain(2), insert("ab"), Delete(3), Retain(1)]
    );
    assert_eq!(normalized.base_len(), 6);
    assert_eq!(normalized.target_len(), 5);
    assert_eq!(normalized.inserted_chars(), 2);
    assert_eq!(normalized.deleted_chars(), 3);
    // Insert after delete is stored before it.
    let moved = parse(r#"[-2, "x"]"#, 2).unwrap();
    assert_eq!(moved.components(), &[insert("x"), Delete(2)]);
    assert_eq!(moved, parse(r#"["x", -2]"#, 2).unwrap());
}

#[test]
fn trailing_retain_implied_or_explicit_is_the_same_op() {
    let implied = parse(r#"[2, "x"]"#, 5).unwrap();
    let explicit = parse(r#"[2, "x", 3]"#, 5).unwrap();
    let split = parse(r#"[2, "x", 1, 2]"#, 5).unwrap();
    assert_eq!(implied, explicit);
    assert_eq!(implied, split);
    assert_eq!(implied.components(), &[Retain(2), insert("x"), Retain(3)]);
    assert_eq!(implied.wire_components(), &[Retain(2), insert("x")]);
    assert_eq!(implied.base_len(), 5);
    assert_eq!(implied.target_len(), 6);
}

#[test]
fn identity_and_noop() {
    assert!(Op::identity(0).is_noop());
    assert!(Op::identity(0).components().is_empty());
    assert_eq!(Op::identity(7).components(), &[Retain(7)]);
    assert!(Op::identity(7).wire_components().is_empty());
    assert!(parse("[3]", 3).unwrap().is_noop());
    assert!(!parse(r#"["a"]"#, 0).unwrap().is_noop());
    assert!(!parse("[-1]", 1).unwrap().is_noop());
    assert_eq!(parse("[1, 2]", 3).unwrap(), Op::identity(3));
}

#[test]
fn apply_counts_code_points_with_astral_and_combining_chars() {
    // 😀 and 𝄞 are astral (two UTF-16 units, four UTF-8 bytes, one code point); e\u{301} is
    // two code points.
    let text = "a😀e\u{301}𝄞b";
    assert_eq!(text.chars().count(), 6);
    let op = parse(r#"[1, -1, "𝄞", 1, -1, "\u0300", 1]"#, 6).unwrap();
    let expected = "a𝄞e\u{300}𝄞b";
    assert_eq!(op.apply_to_str(text).unwrap(), expected);
    let mut rope = Rope::from_str(text);
    op.apply(&mut rope).unwrap();
    assert_eq!(rope.to_string(), expected);
    assert_eq!(rope.len_chars(), op.target_len());
}

#[test]
fn apply_refuses_wrong_length_without_panicking() {
    let op = parse("[2, -1]", 3).unwrap();
    let mut rope = Rope::from_str("ab");
    assert_eq!(
        op.apply(&mut rope),
        Err(OpError::LengthMismatch {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(rope.to_string(), "ab");
    assert_eq!(
        op.apply_to_str("😀😀😀😀"),
        Err(OpError::LengthMismatch {
            expected: 3,
            got: 4
        })
    );
}

#[test]
fn compose_is_apply_in_sequence() {
    let text = "hello 😀 world";
    let first = parse(r#"[6, -1, "🎉!", 1, -5, "there"]"#, 13).unwrap();
    let middle = first.apply_to_str(text).unwrap();
    let second = parse(r#"[7, -2, "?", 2, "é"]"#, first.target_len()).unwrap();
    let end = second.apply_to_str(&middle).unwrap();
    let composed = first.compose(&second).unwrap();
    assert_eq!(composed.apply_to_str(text).unwrap(), end);
    assert_eq!(
        second.compose(&first),
        Err(OpError::LengthMismatch {
            expected: second.target_len(),
            got: 13
        })
    );
}

#[test]
fn transform_converges_and_first_insert_goes_left() {
    let text = "abc";
    let first = parse(r#"[1, "X"]"#, 3).unwrap();
    let second = parse(r#"[1, "Y"]"#, 3).unwrap();
    let (first_prime, second_prime) = Op::transform(&first, &second).unwrap();
    let via_first = second_prime
        .apply_to_str(&first.apply_to_str(text).unwrap())
        .unwrap();
    let via_second = first_prime
        .apply_to_str(&second.apply_to_str(text).unwrap())
        .unwrap();
    assert_eq!(via_first, "aXYbc");
    assert_eq!(via_second, "aXYbc");
    assert_eq!(second.transform_over(&first).unwrap(), second_prime);
    let third = parse("[2]", 2).unwrap();
    assert_eq!(
        Op::transform(&first, &third),
        Err(OpError::LengthMismatch {
            expected: 3,
            got: 2
        })
    );
}

#[test]
fn transform_overlapping_deletes() {
    let text = "0123456789";
    let first = parse(r#"[2, -5, "A"]"#, 10).unwrap();
    let second = parse(r#"[4, -5, "B"]"#, 10).unwrap();
    let (first_prime, second_prime) = Op::transform(&first, &second).unwrap();
    let via_first = second_prime
        .apply_to_str(&first.apply_to_str(text).unwrap())
        .unwrap();
    let via_second = first_prime
        .apply_to_str(&second.apply_to_str(text).unwrap())
        .unwrap();
    assert_eq!(via_first, via_second);
    assert_eq!(via_first, "01AB9");
}

#[test]
fn cursors_move_over_inserts_and_deletes() {
    let op = parse(r#"[2, "xy", 2, -3, 1]"#, 8).unwrap();
    // Before the insert, at it (moves right), after it, at and inside the delete, after it.
    let moves = [
        (0, 0),
        (1, 1),
        (2, 4),
        (3, 5),
        (4, 6),
        (5, 6),
        (6, 6),
        (7, 6),
        (8, 7),
    ];
    for (before, after) in moves {
        assert_eq!(transform_position(before, &op), after, "position {before}");
    }
    // Past the end is clamped to the end.
    assert_eq!(transform_position(100, &op), 7);
    assert_eq!(transform_range((2, 5), &op), (4, 6));
    // An insert replacing a deleted range: a cursor inside lands after the inserted text.
    let replace = parse(r#"[1, -3, "Z"]"#, 5).unwrap();
    assert_eq!(transform_position(2, &replace), 2);
    assert_eq!(transform_position(1, &replace), 2);
    assert_eq!(transform_position(0, &Op::identity(0)), 0);
}

#[test]
fn serializes_the_wire_array() {
    let cases = [
        (r#"[2,"x",3]"#, 5, r#"[2,"x"]"#),
        (r#"[-1,"😀",1]"#, 2, r#"["😀",-1]"#),
        (r#"["a\"b\\c\n"]"#, 0, r#"["a\"b\\c\n"]"#),
        ("[5]", 5, "[5]"),
        ("[2,3]", 5, "[5]"),
        ("[-5]", 5, "[-5]"),
    ];
    for (json, base_len, expected) in cases {
        let op = parse(json, base_len).unwrap();
        let serialized = serde_json::to_string(&op).unwrap();
        assert_eq!(serialized, expected, "op {json}");
        assert_eq!(
            parse(&serialized, base_len).unwrap(),
            op,
            "round trip of {json}"
        );
    }
    assert_eq!(serde_json::to_string(&Op::identity(4)).unwrap(), "[4]");
    // The empty-document identity serializes as [] (documented: never broadcast a no-op).
    assert_eq!(serde_json::to_string(&Op::identity(0)).unwrap(), "[]");
}

#[test]
fn error_messages_are_human() {
    assert_eq!(
        OpError::PastEnd {
            reach: 4,
            base_len: 3
        }
        .to_string(),
        "the op reaches code point 4, past the end of its 3-code-point base document"
    );
    assert_eq!(
        OpError::Empty.to_string(),
        "an op must have at least one component"
    );
}
