//! Man pages and man-style `--help` (issue 19): `deploy/man/*.1` are what the binaries' clap
//! definitions generate now (stale pages fail: run `cargo xtask man`), groff and man render
//! every page without a warning, every command's long help has the man sections (and `-h`
//! stays short), and every SEE ALSO names a page or file that exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use apitap_tests::{require, workspace_bin, workspace_root};

/// Every command with a man page: binary and arguments.
const COMMANDS: &[(&str, &[&str])] = &[
    ("apitap-sensor", &[]),
    ("apitap-sensor", &["run"]),
    ("apitap-sensor", &["replay"]),
    ("apitap-sensor", &["check-config"]),
    ("apitap-analyzer", &[]),
    ("apitap-analyzer", &["process"]),
    ("apitap-analyzer", &["check-config"]),
    ("apitap-analyzer", &["run"]),
    ("apitap-analyzer", &["inventory"]),
    ("apitap-analyzer", &["inventory", "list"]),
    ("apitap-analyzer", &["inventory", "show"]),
    ("apitap-analyzer", &["inventory", "export"]),
    ("apitap-analyzer", &["inventory", "changes"]),
    ("apitap-analyzer", &["trace"]),
    ("apitap", &[]),
    ("apitap", &["run"]),
];

const BINARIES: &[&str] = &["apitap-sensor", "apitap-analyzer", "apitap"];

fn man_dir() -> PathBuf {
    workspace_root().join("deploy/man")
}

fn pages_in(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

#[test]
fn committed_man_pages_are_what_the_binaries_generate() {
    let fresh = std::env::temp_dir().join(format!("apitap-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    for bin in BINARIES {
        let out = Command::new(workspace_bin(bin).unwrap())
            .arg("__man")
            .arg(&fresh)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{bin} __man: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let generated = pages_in(&fresh);
    let committed = pages_in(&man_dir());
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "deploy/man/ is stale: run `cargo xtask man`"
    );
    for (name, text) in &generated {
        assert!(
            &committed[name] == text,
            "deploy/man/{name} is stale: run `cargo xtask man`"
        );
    }
    assert_eq!(generated.len(), COMMANDS.len(), "{:?}", generated.keys());
    for (&(bin, args), name) in COMMANDS.iter().zip(COMMANDS.iter().map(|(b, a)| {
        std::iter::once(*b)
            .chain(a.iter().copied())
            .collect::<Vec<_>>()
            .join("-")
    })) {
        let page = &generated[&format!("{name}.1")];
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH EXAMPLES",
            ".SH ENVIRONMENT",
            ".SH \"EXIT STATUS\"",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(page.contains(section), "{bin} {args:?}: no {section}");
        }
        assert!(page.is_ascii(), "{name}.1 is not ASCII roff");
        // The hidden generator is nobody's documented command.
        assert!(!page.contains("__man"), "{name}.1 documents __man");
    }
    std::fs::remove_dir_all(&fresh).unwrap();
}

#[test]
fn man_pages_render_without_warnings() {
    let problem = ["groff", "man"]
        .iter()
        .find(|t| !on_path(t))
        .map(|t| format!("`{t}` is not installed (run `cargo xtask setup`)"));
    if !require(
        "man_pages_render_without_warnings",
        "man page test",
        problem,
    ) {
        return;
    }
    let pages = pages_in(&man_dir());
    assert!(!pages.is_empty());
    for name in pages.keys() {
        let path = man_dir().join(name);
        let groff = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(groff.status.success(), "groff {name}: {groff:?}");
        assert!(
            groff.stderr.is_empty(),
            "groff warns on {name}: {}",
            String::from_utf8_lossy(&groff.stderr)
        );
        let man = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        assert!(man.status.success(), "man -l {name}: {man:?}");
        assert!(
            man.stderr.is_empty(),
            "man warns on {name}: {}",
            String::from_utf8_lossy(&man.stderr)
        );
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(text.contains("EXAMPLES"), "{name}: {text}");
    }
}

#[test]
fn long_help_is_man_style_and_short_help_stays_short() {
    for &(bin, args) in COMMANDS {
        let help = |flag: &str| {
            let out = Command::new(workspace_bin(bin).unwrap())
                .args(args)
                .arg(flag)
                .output()
                .unwrap();
            assert!(out.status.success(), "{bin} {args:?} {flag}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let long = help("--help");
        for section in ["EXAMPLES:", "ENVIRONMENT:", "EXIT STATUS:", "SEE ALSO:"] {
            assert!(
                long.contains(section),
                "{bin} {args:?} --help: no {section}\n{long}"
            );
        }
        assert!(long.contains("RUST_LOG"), "{bin} {args:?} --help: RUST_LOG");
        let short = help("-h");
        assert!(
            !short.contains("EXAMPLES:") && short.len() < long.len(),
            "{bin} {args:?} -h is not the short help"
        );
        assert!(!long.contains("__man") && !short.contains("__man"));
        // Every example runs the command it documents.
        let examples = long
            .split("EXAMPLES:\n")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .unwrap();
        let invocation = std::iter::once(bin)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            examples.contains(&invocation),
            "{invocation}: no example runs it\n{examples}"
        );
        // SEE ALSO names pages that exist and repository files that exist.
        let see_also = long.split("SEE ALSO:\n").nth(1).unwrap();
        for item in see_also.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(page) = item.strip_suffix("(1)") {
                assert!(
                    man_dir().join(format!("{page}.1")).is_file(),
                    "{invocation}: SEE ALSO {item} has no page"
                );
            } else {
                assert!(
                    workspace_root().join(item).is_file(),
                    "{invocation}: SEE ALSO {item} does not exist"
                );
            }
        }
    }
}

#[test]
fn version_names_the_binary_the_version_and_the_build() {
    let version = env!("CARGO_PKG_VERSION");
    // The binaries are built with the profile of this test (`cargo xtask test` builds both).
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    for bin in BINARIES {
        let run = |flag: &str| {
            let out = Command::new(workspace_bin(bin).unwrap())
                .arg(flag)
                .output()
                .unwrap();
            assert!(out.status.success(), "{bin} {flag}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let long = run("--version");
        assert!(long.starts_with(&format!("{bin} {version} (")), "{long}");
        assert!(
            long.trim_end().ends_with(&format!("{profile} build)")),
            "{long}"
        );
        // -V is the version alone, as in the man pages' title line.
        assert_eq!(run("-V"), format!("{bin} {version}\n"));
    }
}
