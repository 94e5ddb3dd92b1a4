//! Benchmarks of the wire codec on the hot path of one keystroke: decoding a client's `op` frame,
//! encoding the author's `ack` (as a frame of its own, and as the connection writes it into its
//! socket buffer) and the once-per-op `op` broadcast.
//!
//! Run: `cargo bench -p chorus-actors --bench codec -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use chorus_actors::ot::{Component, Op};
use chorus_actors::protocol::{ack_prefix, decode_client, push_ack, ServerMsg};
use criterion::{criterion_group, criterion_main, Criterion};

/// A client id as the server issues them (32 hex characters).
const CLIENT: &str = "3f6c2a9e0b1d4c7f8a2e5b9c0d1f3a6e";
/// A document id of typical length.
const DOC: &str = "src/editor/buffer.rs";

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_client");
    let keystroke =
        format!(r#"{{"type":"op","doc":"{DOC}","rev":48213,"seq":1207,"op":[5012,"x"]}}"#);
    let word = format!(
        r#"{{"type":"op","doc":"{DOC}","rev":48213,"seq":1207,"op":[5012,"let λ = 😀;",-3]}}"#
    );
    let paste = format!(
        r#"{{"type":"op","doc":"{DOC}","rev":48213,"seq":1207,"op":[5012,"{}"]}}"#,
        "fn main() {\\n    println!(\\\"hello\\\");\\n}\\n".repeat(20)
    );
    let cursor = format!(r#"{{"type":"cursor","doc":"{DOC}","rev":48213,"ranges":[[5013,5013]]}}"#);
    for (name, frame) in [
        ("op_keystroke", &keystroke),
        ("op_word_and_delete", &word),
        ("op_paste_1kb", &paste),
        ("cursor", &cursor),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| decode_client(black_box(frame.as_bytes())).expect("valid frame"))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_server");
    group.bench_function("ack", |b| {
        b.iter(|| {
            ServerMsg::Ack {
                doc: black_box(DOC),
                seq: black_box(1207),
                rev: black_box(48214),
            }
            .encode()
        })
    });
    // The connection's path: the document's ack prefix, written into a reused buffer.
    let prefix = ack_prefix(DOC);
    let mut socket = Vec::with_capacity(4096);
    group.bench_function("ack_into_socket_buffer", |b| {
        b.iter(|| {
            if socket.len() > 3072 {
                socket.clear();
            }
            push_ack(&mut socket, &prefix, black_box(1207), black_box(48214));
        })
    });
    let keystroke = Op::from_components(
        vec![Component::Retain(5012), Component::Insert("x".into())],
        100_000,
    )
    .expect("valid op");
    group.bench_function("op_broadcast_keystroke", |b| {
        b.iter(|| {
            ServerMsg::Op {
                doc: DOC,
                rev: black_box(48214),
                client: CLIENT,
                op: black_box(&keystroke),
            }
            .encode()
        })
    });
    let paste = Op::from_components(
        vec![
            Component::Retain(5012),
            Component::Insert(
                "fn main() {\n    println!(\"hello\");\n}\n"
                    .repeat(20)
                    .into(),
            ),
        ],
        100_000,
    )
    .expect("valid op");
    group.bench_function("op_broadcast_paste_1kb", |b| {
        b.iter(|| {
            ServerMsg::Op {
                doc: DOC,
                rev: black_box(48214),
                client: CLIENT,
                op: black_box(&paste),
            }
            .encode()
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
