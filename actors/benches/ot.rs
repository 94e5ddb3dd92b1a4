//! Benchmarks of the OT core on realistic small ops (typing): apply, transform_over, compose.
//!
//! Run: `cargo bench -p chorus-actors --bench ot -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use chorus_actors::ot::{Component, Op};
use criterion::{criterion_group, criterion_main, Criterion};
use ropey::Rope;

/// Document sizes for apply: a small file, a large source file, a huge log.
const DOCUMENT_SIZES: [(&str, usize); 3] =
    [("1KB", 1_000), ("100KB", 100_000), ("10MB", 10_000_000)];

/// A document of `len` code points: lines of ASCII with an occasional astral char.
fn document(len: usize) -> String {
    let line = "fn main() { println!(\"hello 😀\"); }\n";
    line.chars().cycle().take(len).collect()
}

/// An op on a document of `base_len` code points: retain `at`, insert `text`, retain the rest.
fn typing(base_len: usize, at: usize, text: &str) -> Op {
    let mut components = Vec::with_capacity(2);
    if at > 0 {
        components.push(Component::Retain(at));
    }
    components.push(Component::Insert(text.into()));
    Op::from_components(components, base_len).expect("benchmark op is valid")
}

/// An op on a document of `base_len` code points deleting `n` code points at `at` (a backspace).
fn backspace(base_len: usize, at: usize, n: usize) -> Op {
    let mut components = Vec::with_capacity(2);
    if at > 0 {
        components.push(Component::Retain(at));
    }
    components.push(Component::Delete(n));
    Op::from_components(components, base_len).expect("benchmark op is valid")
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    for (name, len) in DOCUMENT_SIZES {
        let rope = Rope::from_str(&document(len));
        // One op and its inverse keep the rope at the base length between iterations, so the
        // measurement is two in-place edits (a keystroke and its undo), not a clone of the rope.
        let insert = typing(len, len / 2, "x");
        let remove = backspace(len + 1, len / 2, 1);
        let mut rope_for_insert = rope.clone();
        group.bench_function(format!("insert_char_and_undo_{name}"), |b| {
            b.iter(|| {
                insert
                    .apply(black_box(&mut rope_for_insert))
                    .expect("length matches");
                remove.apply(&mut rope_for_insert).expect("length matches");
            })
        });
    }
    group.finish();
}

fn transform(c: &mut Criterion) {
    let mut group = c.benchmark_group("transform");
    let len = 100_000;
    // Two collaborators typing in different places of a 100 KB document.
    let applied = typing(len, 40_000, "a");
    let incoming = typing(len, 60_000, "b");
    group.bench_function("transform_over_typing", |b| {
        b.iter(|| black_box(&incoming).transform_over(black_box(&applied)))
    });
    // Same position: the tie rule path.
    let tie = typing(len, 40_000, "b");
    group.bench_function("transform_over_tie", |b| {
        b.iter(|| black_box(&tie).transform_over(black_box(&applied)))
    });
    group.bench_function("transform_both_typing", |b| {
        b.iter(|| Op::transform(black_box(&applied), black_box(&incoming)))
    });
    // A paste-sized replace against a backspace.
    let replace = Op::from_components(
        vec![
            Component::Retain(10_000),
            Component::Delete(200),
            Component::Insert("let replaced = 😀;\n".repeat(10).into()),
        ],
        len,
    )
    .expect("benchmark op is valid");
    let erase = backspace(len, 10_100, 1);
    group.bench_function("transform_over_replace", |b| {
        b.iter(|| black_box(&erase).transform_over(black_box(&replace)))
    });
    group.finish();
}

fn compose(c: &mut Criterion) {
    let mut group = c.benchmark_group("compose");
    let len = 100_000;
    // A client composing its next keystroke onto its unacknowledged op.
    let first = typing(len, 5_000, "h");
    let second = typing(len + 1, 5_001, "i");
    group.bench_function("compose_typing", |b| {
        b.iter(|| black_box(&first).compose(black_box(&second)))
    });
    // A run of 100 keystrokes composed one by one (the client's buffer while waiting for an ack).
    group.bench_function("compose_100_keystrokes", |b| {
        b.iter(|| {
            let mut buffer = Op::identity(len);
            for keystroke in 0..100 {
                let next = typing(len + keystroke, 5_000 + keystroke, "x");
                buffer = buffer.compose(&next).expect("lengths match");
            }
            black_box(buffer)
        })
    });
    group.finish();
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    let len = 100_000;
    let wire = r#"[50000,"x"]"#;
    group.bench_function("decode_and_from_raw_typing", |b| {
        b.iter(|| {
            let raw: chorus_actors::ot::RawOp =
                serde_json::from_str(black_box(wire)).expect("valid JSON");
            Op::from_raw(raw, len)
        })
    });
    group.finish();
}

criterion_group!(benches, apply, transform, compose, validate);
criterion_main!(benches);
