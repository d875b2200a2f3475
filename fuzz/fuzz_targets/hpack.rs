//! HPACK blocks (arbitrary bytes, several per table, from the start or joined): never panics,
//! kept fields stay within the limits, the table within its cap, and a synchronised decoder
//! never reports unknown fields.
#![no_main]
use apitap_decode::h2::hpack::{Decoder, Limits};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let limits = Limits { max_fields: 32, max_field_bytes: 4096, max_table_bytes: 2048 };
    let mut d = if ctl & 1 != 0 { Decoder::joined(limits) } else { Decoder::new(limits) };
    if ctl & 2 != 0 {
        d.set_protocol_max(usize::from(ctl) * 16);
    }
    // Blocks separated by 0xff 0x00 (rare inside real blocks).
    let mut start = 0;
    let mut blocks = Vec::new();
    for i in 0..rest.len().saturating_sub(1) {
        if rest[i] == 0xff && rest[i + 1] == 0x00 {
            blocks.push(&rest[start..i]);
            start = i + 2;
        }
    }
    blocks.push(&rest[start.min(rest.len())..]);
    for b in blocks {
        let synced = d.synchronised();
        let mut out = Vec::new();
        if let Ok(info) = d.decode(&Bytes::copy_from_slice(b), &mut out) {
            assert!(out.len() <= 32);
            assert!(out.iter().map(|f| f.len()).sum::<usize>() <= 4096);
            if synced && d.synchronised() {
                assert!(out.iter().all(|f| f.is_complete() || f.unknown_slot.is_none()));
            }
            let _ = info;
        }
        assert!(d.held_bytes() <= 2048, "table {}", d.held_bytes());
    }
});
