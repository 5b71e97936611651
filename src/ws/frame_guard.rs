//! The socket's byte stream, watched at frame headers. actix-http's WebSocket parser applies its
//! size limit only once a whole frame has arrived, so a client that declares a huge frame (a
//! 64-bit length) and streams into it would make the server buffer all of it. The guard sits
//! between the connection and that parser: it reads every frame header as it passes, and ends
//! the stream as soon as a header (or the fragments of one message so far) declares more than
//! the limit, before any of that payload is buffered. Bytes pass through untouched.
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web_actors::ws::ProtocolError;
use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A header is at most 2 bytes, an 8-byte extended length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// What the guard's error says when it cuts a stream. actix-web-actors hands a stream error to
/// the session as `ProtocolError::Io` carrying only its text, so the text is how the session
/// tells a cut (close 1009) from a broken stream; nothing else puts it on the socket's stream.
const CUT: &str = "switchboard frame guard: a frame over the size limit";

/// Whether the session's stream error is the guard cutting an oversized frame.
pub fn cut_oversized(err: &ProtocolError) -> bool {
    matches!(err, ProtocolError::Io(e) if is_cut(&e.to_string()))
}

/// Whether an error's text is the guard's cut.
pub fn is_cut(text: &str) -> bool {
    text.contains(CUT)
}

pub struct FrameGuard<S> {
    inner: S,
    limit: u64,
    /// Header bytes of the frame being read, until the header is complete.
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// Payload declared so far by the data frames of the message being received in fragments.
    message_len: u64,
    cut: bool,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, limit: usize) -> Self {
        Self {
            inner,
            limit: limit as u64,
            header: [0; MAX_HEADER],
            header_len: 0,
            payload_left: 0,
            message_len: 0,
            cut: false,
        }
    }

    /// Walks `chunk` frame by frame; `false` once a header declares too much.
    fn scan(&mut self, mut chunk: &[u8]) -> bool {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                chunk = &chunk[skip..];
                self.payload_left -= skip as u64;
                continue;
            }
            let wanted = self.header_needed();
            let take = (wanted - self.header_len).min(chunk.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[..take]);
            self.header_len += take;
            chunk = &chunk[take..];
            // The first two bytes tell how long the header is; read on until it is complete.
            if self.header_len < self.header_needed() {
                continue;
            }
            if !self.header_done() {
                return false;
            }
        }
        true
    }

    /// How many header bytes the frame being read has (2 until the second byte is known).
    fn header_needed(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let second = self.header[1];
        let extended = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    /// A complete header: checks its length against the limit and starts skipping the payload.
    fn header_done(&mut self) -> bool {
        let (first, second) = (self.header[0], self.header[1]);
        let length = match second & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(bytes)
            }
            short => u64::from(short),
        };
        self.header_len = 0;
        self.payload_left = length;
        let opcode = first & 0x0F;
        // Control frames (close, ping, pong) may come between fragments and count alone.
        let declared = if opcode >= 0x8 {
            length
        } else {
            if opcode != 0x0 {
                self.message_len = 0;
            }
            self.message_len = self.message_len.saturating_add(length);
            self.message_len
        };
        declared <= self.limit
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.cut {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.scan(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.cut = true;
                    let cut = std::io::Error::other(CUT);
                    Poll::Ready(Some(Err(PayloadError::Io(cut))))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> FrameGuard<futures_util::stream::Empty<Result<Bytes, PayloadError>>> {
        FrameGuard::new(futures_util::stream::empty(), 64 * 1024)
    }

    /// A masked client frame header declaring `len` bytes.
    fn header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xFFFF => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn the_session_tells_a_cut_from_a_broken_stream() {
        // actix-web-actors keeps only the text of a stream error.
        let seen = |err: PayloadError| ProtocolError::Io(std::io::Error::other(err.to_string()));
        let cut = PayloadError::Io(std::io::Error::other(CUT));
        assert!(cut_oversized(&seen(cut)));
        assert!(!cut_oversized(&seen(PayloadError::Overflow)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!cut_oversized(&seen(PayloadError::Io(reset))));
    }

    #[test]
    fn frames_within_the_limit_pass_however_they_are_split() {
        let mut bytes = header(0x1, true, 5);
        bytes.extend_from_slice(b"hello");
        bytes.extend(header(0x1, true, 64 * 1024));
        bytes.extend(vec![0; 64 * 1024]);
        bytes.extend(header(0x9, true, 0));
        for split in [1, 3, 7, 1000] {
            let mut g = guard();
            assert!(bytes.chunks(split).all(|c| g.scan(c)), "split {split}");
            assert_eq!((g.header_len, g.payload_left), (0, 0));
        }
    }

    #[test]
    fn a_header_declaring_too_much_is_refused_before_its_payload() {
        let mut g = guard();
        assert!(!g.scan(&header(0x1, true, 1 << 40)));
        let mut g = guard();
        assert!(!g.scan(&header(0x1, true, 64 * 1024 + 1)));
        // Split inside the extended length.
        let mut g = guard();
        let h = header(0x2, true, u64::MAX >> 1);
        assert!(g.scan(&h[..5]));
        assert!(!g.scan(&h[5..]));
    }

    #[test]
    fn fragments_count_together_but_control_frames_between_them_do_not() {
        let mut g = guard();
        assert!(g.scan(&header(0x1, false, 0)));
        assert!(g.scan(&header(0x0, false, 40_000)));
        g.payload_left = 0;
        assert!(g.scan(&header(0x9, true, 100)));
        g.payload_left = 0;
        assert!(!g.scan(&header(0x0, true, 30_000)));
        // A new message starts its own count.
        let mut g = guard();
        assert!(g.scan(&header(0x1, true, 40_000)));
        g.payload_left = 0;
        assert!(g.scan(&header(0x1, true, 40_000)));
    }
}
