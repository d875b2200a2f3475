//! Content-coding removal (RFC 9110 §8.4.1): gzip, deflate and br bodies are decoded so the
//! analyzer sees the API payload, with a hard cap on output so that a decompression bomb is
//! truncated and flagged, never expanded without limit (R-CAP-3, R-CAP-7).

use std::io::Read;

/// Output of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Decoded bytes, at most the cap.
    pub data: Vec<u8>,
    /// The coded stream ended within the input and the output fit under the cap.
    pub complete: bool,
    /// Output hit the cap at more than [`BOMB_RATIO`] times the input size.
    pub bomb: bool,
}

/// Output/input ratio above which a capped decode is reported as a decompression bomb. Real
/// JSON compresses 5–20×; gzip's maximum is about 1032×.
pub const BOMB_RATIO: usize = 100;

/// Why a body was left encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A coding this decoder does not implement (kept as is, not an anomaly).
    Unsupported,
    /// The coded bytes are corrupt.
    Corrupt,
}

/// Removes the codings listed in a `Content-Encoding` value (applied in order, so removed in
/// reverse), producing at most `cap` bytes. `input_complete` tells whether `input` is the whole
/// body (a truncated capture ends early without being corrupt).
pub fn decode(
    content_encoding: &str,
    input: &[u8],
    cap: usize,
    input_complete: bool,
) -> Result<Decoded, DecodeError> {
    // At most two codings (RFC 9110 §8.4.1 allows a list; real servers send one, rarely two).
    let mut listed = content_encoding
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
    let (applied_first, applied_last) = match (listed.next(), listed.next(), listed.next()) {
        (Some(only), None, _) => (None, only),
        (Some(first), Some(last), None) => (Some(first), last),
        _ => return Err(DecodeError::Unsupported),
    };
    // The last coding applied is removed first, straight from the input (no copy).
    let mut out = decode_one(applied_last, input, cap, input_complete)?;
    if let Some(coding) = applied_first {
        let stage = decode_one(coding, &out.data, cap, out.complete)?;
        out = Decoded {
            bomb: out.bomb | stage.bomb,
            ..stage
        };
    }
    Ok(out)
}

fn decode_one(
    coding: &str,
    input: &[u8],
    cap: usize,
    input_complete: bool,
) -> Result<Decoded, DecodeError> {
    let mut out = Vec::with_capacity(cap.min(input.len().saturating_mul(4)).min(1 << 20));
    let limit = cap as u64 + 1;
    // Decoders read from `rest` (a slice is BufRead, so no extra buffering): what is left of it
    // afterwards tells how much input produced the output, which is what the bomb ratio needs.
    let mut rest: &[u8] = input;
    let is = |name: &str| coding.eq_ignore_ascii_case(name);
    let result = if is("gzip") || is("x-gzip") {
        flate2::bufread::MultiGzDecoder::new(&mut rest)
            .take(limit)
            .read_to_end(&mut out)
    } else if is("deflate") {
        // RFC 9110 §8.4.1.2: "deflate" is the zlib format; some servers send raw deflate.
        let zlib = flate2::bufread::ZlibDecoder::new(&mut rest)
            .take(limit)
            .read_to_end(&mut out);
        if zlib.is_err() && out.is_empty() {
            rest = input;
            flate2::bufread::DeflateDecoder::new(&mut rest)
                .take(limit)
                .read_to_end(&mut out)
        } else {
            zlib
        }
    } else if is("br") {
        brotli_decompressor::Decompressor::new(&mut rest, 4096)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        return Err(DecodeError::Unsupported);
    };
    let consumed = input.len() - rest.len();
    let capped = out.len() > cap;
    out.truncate(cap);
    let ended = match result {
        Ok(_) => !capped,
        // A capture that stopped early ends the coded stream early: keep what decoded.
        Err(_) if !input_complete && (!out.is_empty() || input.len() < 32) => false,
        Err(_) => return Err(DecodeError::Corrupt),
    };
    let bomb = capped && out.len() > BOMB_RATIO.saturating_mul(consumed.max(1));
    Ok(Decoded {
        data: out,
        complete: ended && input_complete,
        bomb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        let body = br#"{"users":[{"id":1},{"id":2}]}"#.repeat(20);
        let d = decode("gzip", &gzip(&body), 1 << 16, true).unwrap();
        assert_eq!(d.data, body);
        assert!(d.complete && !d.bomb);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&body).unwrap();
        assert_eq!(
            decode("deflate", &z.finish().unwrap(), 1 << 16, true)
                .unwrap()
                .data,
            body
        );
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&body).unwrap();
        assert_eq!(
            decode("deflate", &raw.finish().unwrap(), 1 << 16, true)
                .unwrap()
                .data,
            body
        );
    }

    #[test]
    fn brotli_decodes() {
        // b"hello hello hello hello" compressed by the reference brotli encoder (Python brotli).
        let br = [
            27, 22, 0, 248, 141, 148, 110, 222, 68, 85, 134, 150, 108, 32, 111, 33, 79, 28, 224, 56,
        ];
        let d = decode("br", &br, 1024, true).unwrap();
        assert_eq!(d.data, b"hello hello hello hello");
        assert!(d.complete);
    }

    #[test]
    fn bomb_is_capped_and_flagged() {
        let zeros = vec![0u8; 50 * 1024 * 1024];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 100 * 1024);
        let d = decode("gzip", &bomb, 64 * 1024, true).unwrap();
        assert_eq!(d.data.len(), 64 * 1024);
        assert!(d.bomb && !d.complete);
        // Ordinary JSON that merely exceeds the cap is truncated, not a bomb.
        let json: String = (0..20_000)
            .map(|i| format!("{{\"id\":{i},\"name\":\"user{}\"}},", i * 7919 % 10007))
            .collect();
        let d = decode("gzip", &gzip(json.as_bytes()), 64 * 1024, true).unwrap();
        assert!(!d.bomb && !d.complete && d.data.len() == 64 * 1024);
    }

    #[test]
    fn truncated_capture_keeps_prefix_and_corrupt_is_an_error() {
        let body = (0..5000)
            .map(|i| format!("{{\"n\":{i}}},"))
            .collect::<String>();
        let g = gzip(body.as_bytes());
        let d = decode("gzip", &g[..g.len() / 2], 1 << 20, false).unwrap();
        assert!(!d.complete && !d.data.is_empty());
        assert!(body.as_bytes().starts_with(&d.data));
        assert_eq!(
            decode("gzip", b"definitely not gzip data at all....", 1024, true),
            Err(DecodeError::Corrupt)
        );
        assert_eq!(
            decode("compress", b"x", 1024, true),
            Err(DecodeError::Unsupported)
        );
        assert_eq!(
            decode("identity", b"x", 1024, true),
            Err(DecodeError::Unsupported)
        );
    }

    #[test]
    fn stacked_codings_are_removed_in_reverse() {
        let body = b"stacked".repeat(10);
        let twice = gzip(&gzip(&body));
        assert_eq!(decode("gzip, gzip", &twice, 4096, true).unwrap().data, body);
    }
}
