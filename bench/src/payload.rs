//! What a browser really sends through a signaling server: a Chrome-like audio+video SDP of
//! about 1.2 KB for offers and answers, and ICE candidates of about 200 B.
use serde_json::{json, Value};

const FINGERPRINT: &str = "sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";

/// A session description; `setup` is actpass for an offer and active for an answer.
pub fn sdp(setup: &str, session_id: u64) -> String {
    let media = |kind: &str, mid: u32, formats: &str, lines: &[&str], ssrc: u32| {
        let mut m = format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {formats}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:Xb2n\r\na=ice-pwd:9rZ0xkA1c3yJm6tB2vQwE8pL\r\na=ice-options:trickle\r\n\
             a=fingerprint:{FINGERPRINT}\r\na=setup:{setup}\r\na=mid:{mid}\r\na=sendrecv\r\n\
             a=msid:stream0 {kind}0\r\na=rtcp-mux\r\n"
        );
        for line in lines {
            m.push_str(line);
            m.push_str("\r\n");
        }
        m.push_str(&format!("a=ssrc:{ssrc} cname:switchboard-bench\r\n"));
        m
    };
    let audio = media(
        "audio",
        0,
        "111 63 9 0 8 110",
        &[
            "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:63 red/48000/2",
            "a=rtpmap:9 G722/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:110 telephone-event/48000",
        ],
        1001,
    );
    let video = media(
        "video",
        1,
        "96 97 98",
        &[
            "a=rtcp-rsize",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 goog-remb",
            "a=rtcp-fb:96 transport-cc",
            "a=rtcp-fb:96 nack pli",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
        ],
        2001,
    );
    format!(
        "v=0\r\no=- {session_id} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
         a=extmap-allow-mixed\r\na=msid-semantic: WMS stream0\r\n{audio}{video}"
    )
}

/// An RTCIceCandidateInit as browsers serialize it.
pub fn candidate(n: usize) -> Value {
    json!({
        "candidate": format!(
            "candidate:14672500{n} 1 udp 2122260223 192.168.1.{} 5{:04} typ host generation 0 ufrag Xb2n network-id 1 network-cost 10",
            20 + n % 200,
            n % 10_000
        ),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "Xb2n"
    })
}

/// Each direction of a call repeats: one SDP (offer one way, answer the other) and then
/// this many candidates, as a browser trickles them.
pub const CANDIDATES_PER_SDP: usize = 4;
