//! An HTTP/1.1 client with one kept-alive connection, for the broker's REST API (registration,
//! friendships, logins, call history), on hyper's client connection. One connection per
//! client, not a pool: a client connecting from its own loopback address stands for another
//! client address (the isolation scenario), and nothing here is on a measured path except the
//! login flood.
use crate::Res;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

pub struct Http {
    addr: SocketAddr,
    /// The local address to connect from (a loopback address of its own stands for another
    /// client), or any.
    source: Option<IpAddr>,
    conn: Option<SendRequest<Full<Bytes>>>,
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
        let body = Bytes::from(body.map(|b| b.to_string()).unwrap_or_default());
        let reused = self.conn.as_ref().is_some_and(|c| !c.is_closed());
        match self.exchange(method, path, token, body.clone()).await {
            Ok(answer) => Ok(answer),
            Err(_) if reused => self.exchange(method, path, token, body).await,
            Err(e) => Err(e),
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Res<(u16, Value)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(USER_AGENT, "switchboard-bench");
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body))?;
        let answer = async {
            let sender = match self.conn.take() {
                Some(sender) if !sender.is_closed() => sender,
                _ => self.connect().await?,
            };
            let sender = self.conn.insert(sender);
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            let value = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body).unwrap_or(Value::Null)
            };
            Ok::<_, crate::Error>((status, value))
        }
        .await;
        if answer.is_err() {
            self.conn = None;
        }
        answer
    }

    async fn connect(&self) -> Res<SendRequest<Full<Bytes>>> {
        let stream = match self.source {
            None => TcpStream::connect(self.addr).await?,
            Some(source) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(source, 0))?;
                socket.connect(self.addr).await?
            }
        };
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection until the server or this client closes it.
        tokio::spawn(connection);
        Ok(sender)
    }
}
