//! The upstream answer reader (`proxy::answer`) on arbitrary bytes: the head
//! parser and the body decoder never panic, and the body decodes the same
//! (data, end, error) whole, halved and byte by byte.
#![no_main]

use aigate::proxy::answer::{Framing, Step, Unframe, framing, take_head};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// Data decoded, whether the end was reached, whether it failed.
fn decode(f: fn() -> Framing, pieces: &[&[u8]]) -> (Vec<u8>, bool, bool) {
    let mut u = Unframe::new(f());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match u.next(&mut buf) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty(), "empty data step");
                    out.extend_from_slice(&d);
                }
                Ok(Step::End) => return (out, true, false),
                Ok(Step::More) => break,
                Err(_) => return (out, false, true),
            }
        }
    }
    (out, false, false)
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(head)) = take_head(&mut buf) {
        assert!(buf.len() < data.len());
        let _ = framing(&head);
        let _ = head.iter().count();
    }
    let cut = data.len() / 3;
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let framings: [fn() -> Framing; 3] = [
        || Framing::Chunked,
        || Framing::Length(100),
        || Framing::Close,
    ];
    for f in framings {
        let whole = decode(f, &[data]);
        let halves = decode(f, &[&data[..cut], &data[cut..]]);
        let bytewise = decode(f, &bytes);
        assert_eq!(whole.2, halves.2, "split at {cut} changed the error");
        assert_eq!(whole.2, bytewise.2, "byte-by-byte feeding changed the error");
        if !whole.2 {
            assert_eq!(whole, halves, "split at {cut} changed the body");
            assert_eq!(whole, bytewise, "byte-by-byte feeding changed the body");
        }
    }
});
