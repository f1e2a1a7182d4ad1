//! The SSE parser on arbitrary bytes: never panics, stays within its cap, and
//! gives the same events however the input is cut.
#![no_main]

use aigate::sse::{Event, Parser};
use libfuzzer_sys::fuzz_target;

fn events(pieces: &[&[u8]], cap: usize) -> (Vec<(String, Vec<u8>)>, bool) {
    let mut p = Parser::new(cap);
    let mut got = Vec::new();
    let mut failed = false;
    let mut on = |e: Event<'_>| got.push((e.event.to_string(), e.data.to_vec()));
    for piece in pieces {
        if p.feed(piece, &mut on).is_err() {
            failed = true;
            break;
        }
        assert!(p.buffered() <= cap, "buffer above its cap");
    }
    if !failed {
        failed = p.finish(&mut on).is_err();
    }
    (got, failed)
}

fuzz_target!(|data: &[u8]| {
    let cap = 64 + data.len() / 2;
    let whole = events(&[data], cap);
    let cut = data.len() / 3;
    let halves = events(&[&data[..cut], &data[cut..]], cap);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let bytewise = events(&bytes, cap);
    if !whole.1 {
        assert_eq!(whole, halves, "split at {cut} changed the events");
        assert_eq!(whole, bytewise, "byte-by-byte feeding changed the events");
    }
    for (_, d) in &whole.0 {
        assert!(d.len() <= cap);
    }
});
