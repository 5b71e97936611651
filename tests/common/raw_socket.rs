//! A WebSocket spoken byte by byte over a plain TCP stream, for what a well-behaved client
//! library refuses to send: frame headers that lie about their length, payloads that never come.
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawSocket {
    pub stream: TcpStream,
}

/// How a raw socket's server side ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code.
    Closed(u16),
    /// Nothing within the time allowed.
    StillOpen,
}

impl RawSocket {
    /// Opens `/ws` on `address` with a handwritten upgrade request.
    pub async fn upgrade(address: &str) -> Self {
        match Self::upgrade_with(address, "").await {
            Ok(socket) => socket,
            Err(head) => panic!("no upgrade: {head}"),
        }
    }

    /// The upgrade with extra header lines (each ending in CRLF); `Err` holds the answer's
    /// head when it is not 101.
    pub async fn upgrade_with(address: &str, extra: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(address).await.expect("connect");
        Self::upgrade_on(stream, address, extra).await
    }

    /// The upgrade from another local address (127.0.0.2, say: another client to the broker).
    pub async fn upgrade_from(local: std::net::IpAddr, address: &str) -> Result<Self, String> {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind((local, 0).into()).expect("bind");
        let stream = socket
            .connect(address.parse().expect("address"))
            .await
            .expect("connect");
        Self::upgrade_on(stream, address, "").await
    }

    /// The upgrade on a socket whose receive buffer is only `bytes` long, so that a client
    /// that stops reading pushes back on the server almost at once.
    pub async fn upgrade_with_small_buffer(address: &str, bytes: u32) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("receive buffer");
        let stream = socket
            .connect(address.parse().expect("address"))
            .await
            .expect("connect");
        match Self::upgrade_on(stream, address, "").await {
            Ok(socket) => socket,
            Err(head) => panic!("no upgrade: {head}"),
        }
    }

    async fn upgrade_on(mut stream: TcpStream, address: &str, extra: &str) -> Result<Self, String> {
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            stream.read_exact(&mut byte).await.expect("upgrade answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if head.starts_with("HTTP/1.1 101") {
            Ok(Self { stream })
        } else {
            Err(head)
        }
    }

    /// A masked client frame header declaring `len` payload bytes.
    pub fn header(opcode: u8, len: u64) -> Vec<u8> {
        let mut header = vec![0x80 | opcode, 0x80 | 127];
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        header
    }

    /// A masked close frame with `code` (RFC 6455 section 5.5.1).
    pub fn close_frame(code: u16) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let payload = code.to_be_bytes();
        let mut frame = vec![0x88, 0x80 | 2];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    /// Waits for the server to close TCP (EOF), for at most `within`; how long it took.
    pub async fn eof(&mut self, within: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        let mut buf = [0u8; 256];
        let read = async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .ok()
            .map(|_| started.elapsed())
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        let mut frame = Self::header(0x1, text.len() as u64);
        let mask = [0x11, 0x22, 0x33, 0x44];
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        assert!(self.write(&frame).await, "the server hung up");
    }

    /// Reads text frames until one satisfies `pred`, for at most a few seconds.
    pub async fn recv_until(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let read = async {
            loop {
                let mut head = [0; 2];
                self.stream.read_exact(&mut head).await.expect("frame head");
                let len = match head[1] & 0x7F {
                    126 => {
                        let mut ext = [0; 2];
                        self.stream.read_exact(&mut ext).await.expect("length");
                        usize::from(u16::from_be_bytes(ext))
                    }
                    127 => {
                        let mut ext = [0; 8];
                        self.stream.read_exact(&mut ext).await.expect("length");
                        u64::from_be_bytes(ext) as usize
                    }
                    short => usize::from(short),
                };
                let mut payload = vec![0; len];
                self.stream.read_exact(&mut payload).await.expect("payload");
                if head[0] & 0x0F == 0x1 {
                    let frame: serde_json::Value =
                        serde_json::from_slice(&payload).expect("JSON frame");
                    if pred(&frame) {
                        return frame;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("no such frame within 5 s")
    }

    /// Writes `bytes`; false once the server has hung up.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads server frames until a close frame, for at most `within`.
    pub async fn ending(&mut self, within: Duration) -> Ending {
        let read = async {
            loop {
                let mut head = [0; 2];
                self.stream.read_exact(&mut head).await.ok()?;
                let len = match head[1] & 0x7F {
                    126 => {
                        let mut ext = [0; 2];
                        self.stream.read_exact(&mut ext).await.ok()?;
                        usize::from(u16::from_be_bytes(ext))
                    }
                    127 => {
                        let mut ext = [0; 8];
                        self.stream.read_exact(&mut ext).await.ok()?;
                        usize::try_from(u64::from_be_bytes(ext)).ok()?
                    }
                    short => usize::from(short),
                };
                let mut payload = vec![0; len];
                self.stream.read_exact(&mut payload).await.ok()?;
                if head[0] & 0x0F == 0x8 && len >= 2 {
                    return Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
        };
        match tokio::time::timeout(within, read).await {
            Ok(Some(code)) => Ending::Closed(code),
            Ok(None) => panic!("the server hung up without a close frame"),
            Err(_) => Ending::StillOpen,
        }
    }
}
