//! TCP_CORK on a client connection while a stream's response head and its
//! first content are written, so both leave in one packet.
//!
//! Why: pingora flushes a response head that has no Content-Length by itself
//! (it may be a live stream), so a stream's head and first event went out as
//! two packets. On loopback and on busy hosts the first packet wakes the
//! client, which can preempt the gateway before it writes the second: the
//! first content byte then reached clients ~130 µs after the head
//! (benches/first_byte.py, `rx`). Corked, the kernel holds the head until the
//! content is written and the cork is pulled. Two setsockopt calls per
//! stream, none per event.

use pingora_core::protocols::http::ServerSession;

/// Cork (`on`) or uncork the client socket of `s`. True when it was set.
/// HTTP/1 only (h2 frames are written by the h2 layer).
pub fn set(s: &ServerSession, on: bool) -> bool {
    imp::set(s, on)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod imp {
    use pingora_core::protocols::http::ServerSession;
    use std::os::fd::BorrowedFd;

    pub fn set(s: &ServerSession, on: bool) -> bool {
        let ServerSession::H1(h1) = s else {
            return false;
        };
        // The id of a listener's TCP stream (and of TLS over it) is its fd.
        let fd = h1.stream().id();
        if fd < 0 {
            return false;
        }
        // SAFETY: `fd` is the socket of this client connection, owned by
        // the session borrowed here for the whole call; it stays open while
        // the BorrowedFd lives (this function).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        socket2::SockRef::from(&fd).set_tcp_cork(on).is_ok()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn set(_: &pingora_core::protocols::http::ServerSession, _: bool) -> bool {
        false
    }
}
