//! Frame parsing for every supported link type on arbitrary bytes: never panics, and a parsed
//! segment's captured payload never exceeds its declared length or the frame.
#![no_main]
use apitap_decode::packet::{Link, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for link in [Link::Ethernet, Link::LinuxSll, Link::LinuxSll2, Link::RawIp, Link::Loopback] {
        if let Ok(Some(s)) = parse_frame(link, data, 0) {
            assert!(s.payload.len() <= s.wire_len as usize);
            assert!(s.payload.len() <= data.len());
        }
    }
});
