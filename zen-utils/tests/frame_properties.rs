//! Property tests: however a byte stream is split into reads, the decoder
//! yields the same questions as the protocol's definition applied to the whole.

use proptest::prelude::*;
use zen_utils::protocol::frame::{Decoder, RequestTooLong};

/// The protocol's definition, written as plainly as possible: skip whitespace,
/// then a question is every byte up to and including the first `?`, and
/// `max_request` bytes with no `?` is an error.
fn reference(stream: &[u8], max_request: usize) -> (Vec<Vec<u8>>, bool) {
    let mut questions = Vec::new();
    let mut rest = stream;
    loop {
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        rest = &rest[skip..];
        match rest.iter().position(|&b| b == b'?') {
            Some(at) if at < max_request => {
                questions.push(rest[..=at].to_vec());
                rest = &rest[at + 1..];
            }
            _ => return (questions, rest.len() >= max_request),
        }
    }
}

fn decode(stream: &[u8], pieces: &[usize], max_request: usize) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = Decoder::new(max_request);
    let mut questions = Vec::new();
    let mut rest = stream;
    let mut sizes = pieces.iter().copied().cycle();
    while !rest.is_empty() {
        let room = decoder.read_buf();
        let n = sizes
            .next()
            .unwrap_or(usize::MAX)
            .clamp(1, room.len())
            .min(rest.len());
        room[..n].copy_from_slice(&rest[..n]);
        decoder.filled(n);
        rest = &rest[n..];
        loop {
            match decoder.next_question() {
                Ok(Some(question)) => questions.push(question.to_vec()),
                Ok(None) => break,
                Err(RequestTooLong { .. }) => return (questions, true),
            }
        }
        assert!(decoder.capacity() <= max_request + zen_utils::protocol::frame::READ_CHUNK);
    }
    (questions, false)
}

/// Streams made mostly of the bytes that matter: `?`, whitespace and letters.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'?'),
        3 => prop::sample::select(vec![b' ', b'\t', b'\r', b'\n']),
        8 => prop::sample::select(b"Beautiful is better than".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..3000)
}

proptest! {
    #[test]
    fn any_split_yields_the_same_questions_as_the_whole(
        stream in stream(),
        pieces in prop::collection::vec(1usize..64, 1..20),
        max_request in 1usize..80,
    ) {
        let whole = decode(&stream, &[usize::MAX], max_request);
        prop_assert_eq!(&decode(&stream, &pieces, max_request), &whole);
        prop_assert_eq!(&decode(&stream, &[1], max_request), &whole);
        prop_assert_eq!(whole, reference(&stream, max_request));
    }
}
