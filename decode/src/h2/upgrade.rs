//! `Upgrade: h2c` (RFC 7540 §3.2): an HTTP/1.1 request asking to switch to cleartext HTTP/2,
//! and the server's `101 Switching Protocols` accepting it. RFC 9113 §3.1 deprecates the
//! mechanism, but clients (curl `--http2` on `http://`, nghttp `-u`) still send it.
//!
//! This module owns the HTTP/1 side of the switch: recognising the request and the answer,
//! decoding `HTTP2-Settings` (§3.2.1: base64url of a SETTINGS payload) and rewriting the
//! request as the fields stream 1 carries in HTTP/2 (§3.2: "the HTTP/1.1 request that is
//! sent prior to upgrade is assigned a stream identifier of 1"). [`crate::session`] performs
//! the switch with [`super::Connection::upgraded`].

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;

use super::hpack::Field;
use crate::http1::Head;

/// `HTTP2-Settings` values longer than this are not decoded (a SETTINGS payload of every
/// parameter RFC 9113 §6.5.2 defines is 36 bytes; 16 KiB is the default frame size).
const MAX_SETTINGS_HEADER_BYTES: usize = 16 * 1024;

/// §3.2.1: `token68` of the base64url alphabet, trailing `=` omitted (accepted if present).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The request asks to upgrade to h2c: HTTP/1.1 (§3.2: the mechanism is HTTP/1.1's) with
/// `h2c` among its `Upgrade` tokens.
pub fn requested(head: &Head) -> bool {
    head.minor_version == 1 && head.has_token("upgrade", "h2c")
}

/// The response accepts the upgrade: `101` naming `h2c` in `Upgrade` (§3.2). Any other
/// response means the connection stays HTTP/1.1.
pub fn accepted(head: &Head) -> bool {
    head.status == 101 && head.has_token("upgrade", "h2c")
}

/// The SETTINGS payload carried in `HTTP2-Settings` (§3.2.1), `None` when the header is
/// missing, repeated (§3.2.1: exactly one), too long or not base64url.
pub fn settings(head: &Head) -> Option<Vec<u8>> {
    let mut values = head
        .headers
        .fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case("http2-settings"))
        .map(|(_, v)| v);
    let value = values.next()?.trim();
    if values.next().is_some() || value.len() > MAX_SETTINGS_HEADER_BYTES {
        return None;
    }
    BASE64URL.decode(value).ok()
}

/// Connection-specific fields HTTP/2 does not carry (RFC 9113 §8.2.2), plus those the
/// pseudo-headers replace (`host` becomes `:authority`, §8.3.1) and the upgrade's own.
const NOT_IN_H2: [&str; 7] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "host",
];

/// The upgrade request as stream 1's request fields: `:method`, `:scheme` (`http`: h2c is
/// cleartext), `:authority` from `Host`, `:path`, then the other fields with lowercase names
/// (RFC 9113 §8.2.1), without the connection-specific ones or those `Connection` names
/// (§8.2.2).
pub fn request_fields(head: &Head) -> Vec<Field> {
    let named_by_connection = |name: &str| {
        head.headers
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(name))
    };
    let known = |n: &'static str, v: &str| {
        Field::known(
            Bytes::from_static(n.as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
        )
    };
    let mut fields = vec![known(":method", &head.method), known(":scheme", "http")];
    if let Some(host) = head.header("host") {
        fields.push(known(":authority", host));
    }
    fields.push(known(":path", &head.target));
    for (name, value) in head.headers.fields() {
        let lower = name.to_ascii_lowercase();
        if NOT_IN_H2.contains(&lower.as_str()) || named_by_connection(&lower) {
            continue;
        }
        // §8.2.2: `te` may only say `trailers`.
        if lower == "te" && !value.trim().eq_ignore_ascii_case("trailers") {
            continue;
        }
        fields.push(Field::known(
            Bytes::from(lower),
            Bytes::copy_from_slice(value.as_bytes()),
        ));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{Kind, Limits, MessageParser, Step};

    fn head(kind: Kind, bytes: &[u8]) -> Head {
        let mut p = MessageParser::new(
            kind,
            Limits {
                max_header_bytes: 8192,
                max_headers: 64,
            },
        );
        p.push(bytes);
        match p.step() {
            Step::Head(h) => h,
            other => panic!("{other:?}"),
        }
    }

    /// The request `nghttp -u` (nghttp2 1.52, Debian) sent, from `nghttp_upgrade.h2dump`.
    const NGHTTP_U: &[u8] = b"GET /api/user1.json HTTP/1.1\r\nhost: 127.0.0.1:18084\r\n\
connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\
accept: */*\r\nuser-agent: nghttp2/1.52.0\r\n\r\n";

    #[test]
    fn nghttp_upgrade_request() {
        let h = head(Kind::Request, NGHTTP_U);
        assert!(requested(&h));
        // SETTINGS_MAX_CONCURRENT_STREAMS = 100, SETTINGS_INITIAL_WINDOW_SIZE = 65535.
        assert_eq!(
            settings(&h).as_deref(),
            Some(&[0, 3, 0, 0, 0, 100, 0, 4, 0, 0, 0xff, 0xff][..])
        );
        let f: Vec<(String, String)> = request_fields(&h)
            .iter()
            .map(|f| {
                let s = |b: &Option<Bytes>| {
                    String::from_utf8(b.as_deref().unwrap_or_default().to_vec()).unwrap()
                };
                (s(&f.name), s(&f.value))
            })
            .collect();
        let want: Vec<(String, String)> = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "127.0.0.1:18084"),
            (":path", "/api/user1.json"),
            ("accept", "*/*"),
            ("user-agent", "nghttp2/1.52.0"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(f, want);
    }

    #[test]
    fn answers_and_bad_settings() {
        assert!(accepted(&head(
            Kind::Response,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )));
        assert!(!accepted(&head(
            Kind::Response,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        )));
        assert!(!accepted(&head(
            Kind::Response,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        )));
        // HTTP/1.0 cannot upgrade this way; two HTTP2-Settings, or non-base64url, are invalid.
        assert!(!requested(&head(
            Kind::Request,
            b"GET / HTTP/1.0\r\nUpgrade: h2c\r\n\r\n"
        )));
        let two = head(
            Kind::Request,
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\nHTTP2-Settings: AAMAAABk\r\n\r\n",
        );
        assert_eq!(settings(&two), None);
        let bad = head(
            Kind::Request,
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AA+/\r\n\r\n",
        );
        assert_eq!(settings(&bad), None);
        let padded = head(
            Kind::Request,
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n",
        );
        assert_eq!(
            settings(&padded).as_deref(),
            Some(&[0, 3, 0, 0, 0, 100][..])
        );
    }
}
