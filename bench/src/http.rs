//! A minimal HTTP/1.1 client with keep-alive, for the broker's REST API (registration,
//! friendships, logins, call history). Enough for JSON bodies with Content-Length, which is
//! all the API answers with; nothing here is on a measured path except the login flood.
use crate::Res;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub struct Http {
    addr: SocketAddr,
    /// The local address to connect from (a loopback address of its own stands for another
    /// client), or any.
    source: Option<IpAddr>,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            source: None,
            conn: None,
        }
    }

    /// A client connecting from `source` (e.g. 127.0.0.2), which the broker sees as another
    /// client address.
    pub fn from(addr: SocketAddr, source: IpAddr) -> Self {
        Self {
            addr,
            source: Some(source),
            conn: None,
        }
    }

    /// Sends one request and reads the answer: (status, JSON body or Null). Reconnects once
    /// if the kept-alive connection was closed by the server meanwhile.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nuser-agent: switchboard-bench\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("content-type: application/json\r\n");
        }
        if let Some(token) = token {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        let reused = self.conn.is_some();
        match self.exchange(head.as_bytes()).await {
            Ok(answer) => Ok(answer),
            Err(_) if reused => {
                self.conn = None;
                self.exchange(head.as_bytes()).await
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Res<(u16, Value)> {
        if self.conn.is_none() {
            let stream = match self.source {
                None => TcpStream::connect(self.addr).await?,
                Some(source) => {
                    let socket = TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::new(source, 0))?;
                    socket.connect(self.addr).await?
                }
            };
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        match read_response(conn, request).await {
            Ok((status, body, keep_alive)) => {
                if !keep_alive {
                    self.conn = None;
                }
                Ok((status, body))
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// Writes the request, reads the answer: (status, body, whether the connection stays open).
async fn read_response(conn: &mut BufReader<TcpStream>, request: &[u8]) -> Res<(u16, Value, bool)> {
    conn.get_mut().write_all(request).await?;
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err("connection closed before the response".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .ok_or("bad status line")?
        .parse()?;
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err("connection closed in the headers".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name == "content-length" {
                length = value.parse()?;
            } else if name == "connection" && value.eq_ignore_ascii_case("close") {
                close = true;
            } else if name == "transfer-encoding" {
                return Err("chunked responses are not supported by the bench client".into());
            }
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await?;
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    Ok((status, value, !close))
}
