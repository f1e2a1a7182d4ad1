//! An upstream's HTTP/1.1 answer, read straight off a pooled stream: the head
//! parsed once with httparse and kept as byte ranges, the body unframed
//! (Content-Length, chunked, or to the close).
//!
//! Why not pingora-core's HTTP/1 client session: it turns every answer head
//! into a case-preserving `HeaderMap` (each name validated, lower-cased,
//! hashed and stored twice), ~13k instructions per request on the passthrough
//! benchmark, a sixth of the gateway's work. aigate reads a few headers of
//! the answer and copies the rest to the client's head once; the bytes and
//! their offsets are all it needs. The pool and the connectors stay
//! pingora-core's (`upstream.rs`).

use bytes::{Buf, Bytes, BytesMut};
use pingora_core::protocols::Stream;
use pingora_core::{Error, ErrorType, Result};
use std::ops::Range;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A head larger than this is refused (as pingora's own limit).
const MAX_HEAD: usize = 1024 * 1024;
/// Headers parsed on the stack; more (rare) retries with `MAX_HEADERS`.
const FEW_HEADERS: usize = 48;
const MAX_HEADERS: usize = 256;
/// Read size: an answer head and a typical JSON body come in one read.
const READ_SIZE: usize = 16 * 1024;

/// An answer's status line and headers, as received.
#[derive(Clone, Debug)]
pub struct Head {
    pub status: u16,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    raw: Bytes,
    /// Name and value ranges in `raw`, in order received.
    fields: Vec<(Range<u32>, Range<u32>)>,
}

fn span(r: &Range<u32>) -> Range<usize> {
    r.start as usize..r.end as usize
}

impl Head {
    /// Every header, in order: name (as sent) and value.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|(n, v)| (&self.raw[span(n)], &self.raw[span(v)]))
    }

    /// Every header, the value as a shared slice of the head (no copy).
    pub fn iter_shared(&self) -> impl Iterator<Item = (&[u8], Bytes)> {
        self.fields
            .iter()
            .map(|(n, v)| (&self.raw[span(n)], self.raw.slice(span(v))))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The first value of header `name` (lower-case ASCII).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, as comma-separated tokens (`Connection`,
    /// `Transfer-Encoding`).
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
    }
}

/// Parse one answer head at the start of `buf`: when it is complete, the
/// head, split off `buf`; `None` when more bytes are needed. A head over
/// `MAX_HEAD`, complete or not, is refused.
pub fn take_head(buf: &mut BytesMut) -> Result<Option<Head>> {
    let parsed = parse_head(buf)?;
    if parsed.as_ref().map_or(buf.len(), |(_, len)| *len) > MAX_HEAD {
        return Error::e_explain(
            ErrorType::InvalidHTTPHeader,
            "upstream answer head too large",
        );
    }
    let Some((mut head, len)) = parsed else {
        return Ok(None);
    };
    // The ranges are offsets from the start of `buf`, which is where the
    // split-off bytes start.
    head.raw = buf.split_to(len).freeze();
    Ok(Some(head))
}

fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>> {
    let mut few = [httparse::EMPTY_HEADER; FEW_HEADERS];
    match parse_into(buf, &mut few) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut many = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            parse_into(buf, &mut many[..])
        }
        other => other,
    }
    .map_err(|e| {
        Error::because(
            ErrorType::InvalidHTTPHeader,
            "while reading the upstream answer head",
            e,
        )
    })
}

fn parse_into<'b>(
    buf: &'b [u8],
    headers: &mut [httparse::Header<'b>],
) -> std::result::Result<Option<(Head, usize)>, httparse::Error> {
    let mut resp = httparse::Response::new(headers);
    // As lenient as pingora's own client.
    let mut parser = httparse::ParserConfig::default();
    parser.allow_spaces_after_header_name_in_responses(true);
    parser.allow_obsolete_multiline_headers_in_responses(true);
    let len = match parser.parse_response(&mut resp, buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        start..start + s.len() as u32
    };
    let fields = resp
        .headers
        .iter()
        .map(|h| (range(h.name.as_bytes()), range(h.value)))
        .collect();
    let head = Head {
        status: resp.code.unwrap_or(0),
        http11: resp.version == Some(1),
        // Filled in by `take_head`, which owns the bytes.
        raw: Bytes::new(),
        fields,
    };
    Ok(Some((head, len)))
}

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Debug, PartialEq)]
pub enum Framing {
    /// No body (204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// The framing `head` declares, or an error for a Content-Length that
/// cannot be trusted (not a number, or several that disagree).
pub fn framing(head: &Head) -> Result<Framing> {
    if matches!(head.status, 204 | 304) {
        return Ok(Framing::Empty);
    }
    let mut te = head.tokens("transfer-encoding").peekable();
    if te.peek().is_some() {
        // Chunked only as the final coding; anything else runs to the close.
        let last = te.last().unwrap_or_default();
        return Ok(if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length: Option<u64> = None;
    for v in head.tokens("content-length") {
        let n = std::str::from_utf8(v)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        match (n, length) {
            (Some(n), None) => length = Some(n),
            (Some(n), Some(l)) if n == l => {}
            _ => {
                return Error::e_explain(
                    ErrorType::InvalidHTTPHeader,
                    "upstream answer has an invalid Content-Length",
                );
            }
        }
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Whether the connection may carry another request after this answer.
fn keeps_alive(head: &Head) -> bool {
    let mut close = false;
    let mut keep = false;
    for t in head.tokens("connection") {
        close |= t.eq_ignore_ascii_case(b"close");
        keep |= t.eq_ignore_ascii_case(b"keep-alive");
    }
    !close && (head.http11 || keep)
}

/// Where the body decoder stands.
#[derive(Debug, PartialEq)]
enum Body {
    /// Bytes of the body still to come.
    Length(u64),
    /// Bytes of the current chunk still to come, then its CRLF.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Close,
    Done,
}

/// Decodes a body from bytes as they arrive. Pure: `next` takes what it can
/// from `buf` and never waits, so every split of the input across reads
/// gives the same data (tests below).
#[derive(Debug)]
pub struct Unframe {
    state: Body,
}

/// What `Unframe::next` found.
#[derive(Debug, PartialEq)]
pub enum Step {
    Data(Bytes),
    /// The body is complete.
    End,
    /// More input is needed.
    More,
}

fn framing_error(what: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, what)
}

impl Unframe {
    pub fn new(f: Framing) -> Unframe {
        let state = match f {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::ChunkSize,
            Framing::Close => Body::Close,
        };
        Unframe { state }
    }

    pub fn done(&self) -> bool {
        self.state == Body::Done
    }

    /// Whether the end of the body is the end of the connection.
    pub fn to_close(&self) -> bool {
        self.state == Body::Close
    }

    /// The next piece of body data in `buf` (consumed from it), the end, or
    /// a request for more input. Chunk data is handed out as it arrives, not
    /// held until its chunk is whole.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Step> {
        loop {
            match self.state {
                Body::Done => return Ok(Step::End),
                Body::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Body::Length(left) | Body::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = left.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    let chunked = matches!(self.state, Body::ChunkData(_));
                    self.state = match (chunked, left - n) {
                        (false, 0) => Body::Done,
                        (false, rest) => Body::Length(rest),
                        (true, 0) => Body::ChunkEnd,
                        (true, rest) => Body::ChunkData(rest),
                    };
                    return Ok(Step::Data(data));
                }
                Body::ChunkEnd => match line_end(buf)? {
                    None => return Ok(Step::More),
                    Some(0) => {
                        buf.advance(2);
                        self.state = Body::ChunkSize;
                    }
                    Some(_) => return Err(framing_error("chunk data longer than its size")),
                },
                Body::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            Body::Trailers
                        } else {
                            Body::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if buf.len() > 4096 {
                            return Err(framing_error("chunk size line too long"));
                        }
                        return Ok(Step::More);
                    }
                    Err(_) => return Err(framing_error("invalid chunk size")),
                },
                Body::Trailers => match line_end(buf)? {
                    None => {
                        if buf.len() > MAX_HEAD {
                            return Err(framing_error("chunked trailers too large"));
                        }
                        return Ok(Step::More);
                    }
                    Some(n) => {
                        buf.advance(n + 2);
                        if n == 0 {
                            self.state = Body::Done;
                        }
                    }
                },
            }
        }
    }

    /// The input ended (the upstream closed): fine only for a
    /// close-delimited body.
    pub fn eof(&mut self) -> Result<Step> {
        match self.state {
            Body::Close => {
                self.state = Body::Done;
                Ok(Step::End)
            }
            Body::Done => Ok(Step::End),
            _ => Error::e_explain(
                ErrorType::ConnectionClosed,
                "upstream closed the connection mid-answer",
            ),
        }
    }
}

/// The length of the line at the start of `buf` without its CRLF, or `None`
/// when no line end has arrived yet. CRLF only, as httparse's chunk sizes.
fn line_end(buf: &[u8]) -> Result<Option<usize>> {
    match memchr::memchr(b'\n', buf) {
        None => Ok(None),
        Some(i) if i > 0 && buf[i - 1] == b'\r' && !buf[..i - 1].contains(&b'\r') => {
            Ok(Some(i - 1))
        }
        Some(_) => Err(framing_error("bad line end in chunked body")),
    }
}

/// An upstream connection with an answer head read and its body pending.
pub struct Answer {
    stream: Stream,
    buf: BytesMut,
    head: Head,
    body: Unframe,
    keepalive: bool,
}

async fn read_some(stream: &mut Stream, buf: &mut BytesMut) -> Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_SIZE);
    }
    stream
        .read_buf(buf)
        .await
        .map_err(|e| Error::because(ErrorType::ReadError, "while reading the upstream answer", e))
}

impl Answer {
    /// Read an answer head off `stream` (informational 1xx answers skipped),
    /// within `timeout`.
    pub async fn read(stream: Stream, timeout: Duration) -> Result<Answer> {
        match pingora_timeout::timeout(timeout, Self::read_head(stream)).await {
            Ok(r) => r,
            Err(_) => Error::e_explain(ErrorType::ReadTimedout, "waiting for the upstream answer"),
        }
    }

    async fn read_head(mut stream: Stream) -> Result<Answer> {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        loop {
            if !buf.is_empty()
                && let Some(head) = take_head(&mut buf)?
            {
                if (100..200).contains(&head.status) {
                    if head.status == 101 {
                        return Error::e_explain(
                            ErrorType::InvalidHTTPHeader,
                            "upstream switched protocols unasked",
                        );
                    }
                    continue;
                }
                let body = Unframe::new(framing(&head)?);
                let keepalive = keeps_alive(&head) && !body.to_close();
                return Ok(Answer {
                    stream,
                    buf,
                    head,
                    body,
                    keepalive,
                });
            }
            if read_some(&mut stream, &mut buf).await? == 0 {
                return Error::e_explain(
                    ErrorType::ConnectionClosed,
                    "upstream closed the connection before answering",
                );
            }
        }
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// The next piece of the body, `None` at its end. Cancel-safe: what was
    /// read stays in the answer.
    pub async fn body(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.body.next(&mut self.buf)? {
                Step::Data(d) => return Ok(Some(d)),
                Step::End => return Ok(None),
                Step::More => {}
            }
            if read_some(&mut self.stream, &mut self.buf).await? == 0 {
                self.body.eof()?;
                return Ok(None);
            }
        }
    }

    /// The connection, when it can carry another request: the whole body
    /// read, nothing after it, keep-alive. Else it is closed.
    pub async fn into_reusable(mut self) -> Option<Stream> {
        if self.keepalive && self.body.done() && self.buf.is_empty() {
            Some(self.stream)
        } else {
            self.shutdown().await;
            None
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        let mut buf = BytesMut::from(text.as_bytes());
        let h = take_head(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        h
    }

    #[test]
    fn head_fields_and_lookups() {
        let h = head(
            "HTTP/1.1 429 Too Many\r\nContent-Type: application/json\r\nRetry-After: 7\r\nx-a: 1\r\nX-A: 2\r\n\r\n",
        );
        assert_eq!(h.status, 429);
        assert!(h.http11);
        assert_eq!(h.get("retry-after"), Some(&b"7"[..]));
        assert_eq!(h.get_str("x-a"), Some("1"));
        let names: Vec<_> = h.iter().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(names[0], b"Content-Type");
        assert_eq!(names.len(), 4);
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nA: b\r\n"[..]);
        assert!(take_head(&mut partial).unwrap().is_none());
        assert_eq!(partial.len(), 23, "a partial head stays in the buffer");
        let mut more = BytesMut::from(&b"HTTP/1.1 204 No\r\nA: b\r\n\r\nrest"[..]);
        assert_eq!(
            take_head(&mut more).unwrap().unwrap().get_str("a"),
            Some("b")
        );
        assert_eq!(&more[..], b"rest");
        assert!(take_head(&mut BytesMut::from(&b"HTTP/1.1 2x0 OK\r\n\r\n"[..])).is_err());
    }

    #[test]
    fn many_headers_take_the_slow_path() {
        let mut text = "HTTP/1.1 200 OK\r\n".to_string();
        for i in 0..200 {
            text.push_str(&format!("x-h{i}: {i}\r\n"));
        }
        text.push_str("\r\n");
        let h = head(&text);
        assert_eq!(h.iter().count(), 200);
        assert_eq!(h.get_str("x-h199"), Some("199"));
        text.insert_str(17, &"y: 1\r\n".repeat(MAX_HEADERS));
        assert!(take_head(&mut BytesMut::from(text.as_bytes())).is_err());
    }

    #[test]
    fn framing_rules() {
        let f = |t: &str| framing(&head(t));
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n").unwrap(),
            Framing::Length(12)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").unwrap(),
            Framing::Length(3)
        );
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n").is_err());
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n").is_err());
        // Transfer-Encoding wins over Content-Length.
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
                .unwrap(),
            Framing::Chunked
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap(),
            Framing::Close
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n").unwrap(), Framing::Close);
        assert_eq!(
            f("HTTP/1.1 204 No\r\nContent-Length: 5\r\n\r\n").unwrap(),
            Framing::Empty
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(keeps_alive(&head("HTTP/1.1 200 OK\r\n\r\n")));
        assert!(!keeps_alive(&head(
            "HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n"
        )));
        assert!(!keeps_alive(&head("HTTP/1.0 200 OK\r\n\r\n")));
        assert!(keeps_alive(&head(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"
        )));
    }

    /// Decode `wire` fed in pieces cut at `cuts`; the data, and whether the
    /// decoder saw the end.
    fn decode(framing: Framing, wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool, usize)> {
        let mut u = Unframe::new(framing);
        let mut buf = BytesMut::new();
        let mut out = vec![];
        let mut from = 0;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(wire.len());
        for to in bounds {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            loop {
                match u.next(&mut buf)? {
                    Step::Data(d) => {
                        assert!(!d.is_empty());
                        out.extend_from_slice(&d)
                    }
                    Step::End => return Ok((out, true, buf.len() + wire.len() - from)),
                    Step::More => break,
                }
            }
        }
        Ok((out, false, buf.len()))
    }

    const CHUNKED: &[u8] =
        b"5\r\nhello\r\n1A;ext=\"x\"\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nx-trailer: t\r\n\r\n";

    #[test]
    fn chunked_every_split_point() {
        let want = b"hello abcdefghijklmnopqrstuvwxy".to_vec();
        assert_eq!(
            decode(Framing::Chunked, CHUNKED, &[]).unwrap(),
            (want.clone(), true, 0)
        );
        for i in 0..=CHUNKED.len() {
            for j in i..=CHUNKED.len() {
                let got = decode(Framing::Chunked, CHUNKED, &[i, j]).unwrap();
                assert_eq!(got, (want.clone(), true, 0), "cut at {i}, {j}");
            }
        }
    }

    #[test]
    fn chunked_leaves_what_follows_and_wants_crlf() {
        let mut wire = CHUNKED.to_vec();
        wire.extend_from_slice(b"HTTP/1.1");
        let (_, end, left) = decode(Framing::Chunked, &wire, &[]).unwrap();
        assert!(end);
        assert_eq!(left, 8);
        assert!(decode(Framing::Chunked, b"3\r\nabc\n0\r\n\r\n", &[]).is_err());
        assert!(decode(Framing::Chunked, b"0\r\nx: y\n\r\n", &[]).is_err());
    }

    #[test]
    fn chunked_errors() {
        assert!(decode(Framing::Chunked, b"zz\r\n", &[]).is_err());
        assert!(decode(Framing::Chunked, b"3\r\nabcd\r\n", &[]).is_err());
        assert!(decode(Framing::Chunked, b"3\r\nabc\r\r\n", &[]).is_err());
        assert!(decode(Framing::Chunked, &[b'1'; 5000], &[]).is_err());
        // Truncated: no end, and the caller's eof says so.
        let (d, end, _) = decode(Framing::Chunked, b"5\r\nhel", &[]).unwrap();
        assert_eq!((d, end), (b"hel".to_vec(), false));
        let mut u = Unframe::new(Framing::Chunked);
        assert!(u.eof().is_err());
    }

    #[test]
    fn length_and_close() {
        for i in 0..=11 {
            let (d, end, left) = decode(Framing::Length(9), b"some bytesXY", &[i.min(12)]).unwrap();
            assert_eq!((d, end, left), (b"some byte".to_vec(), true, 3));
        }
        let (d, end, _) = decode(Framing::Length(20), b"short", &[]).unwrap();
        assert_eq!((d, end), (b"short".to_vec(), false));
        let (d, end, _) = decode(Framing::Close, b"to the end", &[3]).unwrap();
        assert_eq!((d, end), (b"to the end".to_vec(), false));
        let mut u = Unframe::new(Framing::Close);
        assert_eq!(u.eof().unwrap(), Step::End);
        assert!(Unframe::new(Framing::Empty).done());
        assert!(Unframe::new(Framing::Length(0)).done());
    }

    /// Random chunked bodies, random cuts: the same data every way.
    #[test]
    fn chunked_random_bodies_and_cuts() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let mut wire = vec![];
            let mut want = vec![];
            for _ in 0..rng.random_range(0..6) {
                let n = rng.random_range(1..40usize);
                let data: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&data);
                wire.extend_from_slice(b"\r\n");
                want.extend_from_slice(&data);
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let mut cuts: Vec<usize> = (0..rng.random_range(0..8))
                .map(|_| rng.random_range(0..=wire.len()))
                .collect();
            cuts.sort();
            assert_eq!(
                decode(Framing::Chunked, &wire, &cuts).unwrap(),
                (want, true, 0),
                "{cuts:?}"
            );
        }
    }
}
