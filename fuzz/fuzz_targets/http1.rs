//! HTTP/1.x framing on arbitrary bytes, fed in arbitrary pieces: never panics, and the
//! receive buffer stays bounded by the header limit plus one piece.
#![no_main]
use apitap_decode::http1::{Framing, Kind, Limits, MessageParser, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let kind = if ctl & 1 == 0 { Kind::Request } else { Kind::Response };
    let piece = usize::from(ctl >> 1).max(1);
    let limits = Limits { max_header_bytes: 1024, max_headers: 16 };
    let mut p = MessageParser::new(kind, limits);
    for chunk in rest.chunks(piece) {
        p.push(chunk);
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 100_000, "parser does not make progress");
            match p.step() {
                Step::NeedMore => break,
                Step::Head(h) => {
                    let mut an = Vec::new();
                    let f = match kind {
                        Kind::Request => Framing::for_request(&h, &mut an),
                        Kind::Response => Framing::for_response(&h, Some("GET"), &mut an),
                    };
                    p.start_body(f);
                }
                Step::Body(_) | Step::End | Step::Invalid(_) => {}
            }
        }
        assert!(p.buffered() <= limits.max_header_bytes + piece + 4096 + 2, "buffer {}", p.buffered());
    }
});
