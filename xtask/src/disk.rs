//! Disk preflight for `cargo xtask test`: fail in the first second, naming the fix, rather than
//! minutes later inside rustc with "No space left on device" (how a CI run on a nearly full
//! disk once ended).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// What a clean `cargo xtask test` leaves under `target/`, rounded up: xtask itself, build,
/// clippy, test binaries, the eBPF object and the test runs' own data. Measured 2.2 GB at its
/// peak on 2026-11-23 (dev profile with line-tables-only debug info, one eBPF build shared by
/// build and clippy); with full debug info and an eBPF build each it was 5.6 GB.
pub const CLEAN_TEST_RUN_BYTES: u64 = 3 << 30;

const GIB: f64 = (1u64 << 30) as f64;

/// The directory cargo builds into: `CARGO_TARGET_DIR` or `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| apitap_tests::workspace_root().join("target"))
}

/// Bytes free to an unprivileged writer on the filesystem holding `path` (statvfs `f_bavail`).
fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: `statvfs` is plain old data; zeroed is a valid value for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, exclusively borrowed out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statvfs {}", path.display()));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes allocated to the files under `dir` (0 when it does not exist); symlinks not followed.
fn allocated_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total = total.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    total
}

/// What a test run still has to write: the clean footprint less what an earlier build left.
fn still_needed(clean: u64, already_built: u64) -> u64 {
    clean.saturating_sub(already_built)
}

/// Checks that the target directory's filesystem can take the test run, and says how much room
/// there is either way.
pub fn check_before_test() -> anyhow::Result<()> {
    let target = target_dir();
    let existing = target
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let free = free_bytes(existing)?;
    let built = allocated_bytes(&target.join("debug"));
    let needed = still_needed(CLEAN_TEST_RUN_BYTES, built);
    eprintln!(
        "disk: {:.1} GiB free for {} ({:.1} GiB already built; a clean test run writes ≈ {:.1} GiB)",
        free as f64 / GIB,
        target.display(),
        built as f64 / GIB,
        CLEAN_TEST_RUN_BYTES as f64 / GIB,
    );
    if free < needed {
        bail!(
            "only {:.1} GiB free on the filesystem holding {}, and this test run needs ≈ {:.1} GiB \
             more: free space (`cargo clean` drops stale builds) or point CARGO_TARGET_DIR at a \
             larger disk",
            free as f64 / GIB,
            target.display(),
            needed as f64 / GIB,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warm_build_needs_only_the_difference() {
        assert_eq!(still_needed(3 << 30, 0), 3 << 30);
        assert_eq!(still_needed(3 << 30, 1 << 30), 2 << 30);
        assert_eq!(still_needed(3 << 30, 40 << 30), 0);
    }

    #[test]
    fn sizes_and_free_space_are_read_from_the_filesystem() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a"), vec![1u8; 64 * 1024]).unwrap();
        let size = allocated_bytes(&dir);
        assert!(size >= 64 * 1024, "{size}");
        assert_eq!(allocated_bytes(&dir.join("missing")), 0);
        assert!(free_bytes(&dir).unwrap() > 0);
        assert!(free_bytes(Path::new("/nonexistent/xtask")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
