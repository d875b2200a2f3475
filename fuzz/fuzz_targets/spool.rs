//! The sensor's on-disk spool recovering from arbitrary segment and cursor files (issue 22: a
//! crash, a full disk or a hostile local user can leave anything there): opening never
//! panics, every record read back is one that decodes, damage is counted, and the spool still
//! takes and returns new records afterwards.
#![no_main]
use apitap_bus::spool::{Spool, SpoolLimits, SpoolRecord};
use apitap_bus::config::SpoolFullPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("apitap-fuzz-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // Segment bytes | cursor bytes.
    let (seg, cursor) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    std::fs::write(dir.join(format!("{:020}.seg", 1u64 << 32)), seg).expect("segment");
    if !cursor.is_empty() {
        std::fs::write(dir.join("cursor"), cursor).expect("cursor");
    }
    let limits = SpoolLimits { max_bytes: 1 << 20, segment_bytes: 64 << 10, on_full: SpoolFullPolicy::DropOldest };
    let Ok(mut spool) = Spool::open(&dir, limits) else { return };
    let mut read = 0usize;
    while let Ok(Some((_, rec))) = spool.read_next() {
        read += 1;
        assert!(rec.value.len() <= seg.len());
        assert!(read <= seg.len() / 12 + 1, "more records than the bytes can hold");
    }
    let rec = SpoolRecord { key: b"k".to_vec(), headers: vec![("h".into(), b"v".to_vec())], value: b"fresh".to_vec() };
    spool.append(&rec).expect("append after recovery");
    spool.flush().expect("flush");
    let mut found = false;
    while let Ok(Some((_, r))) = spool.read_next() {
        found |= r == rec;
    }
    assert!(found, "the fresh record is read back");
    let _ = std::fs::remove_dir_all(&dir);
});
