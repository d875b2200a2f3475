//! Man-style help of the apitap binaries, from one definition (issue 19).
//!
//! Each binary and subcommand has a [`Page`]: its EXAMPLES, FILES, ENVIRONMENT, EXIT STATUS
//! and SEE ALSO. [`Page::render`] gives the text clap shows after the options in `--help`
//! (`after_long_help`; `-h` stays short), and [`write_man_pages`] renders the same pages, with
//! clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS and SUBCOMMANDS from the same clap
//! definitions, as man pages: one per binary and subcommand, `<bin>[-<sub>…].1`. Each binary
//! writes its own with a hidden `__man DIR` subcommand (`cargo xtask man` runs them into
//! `deploy/man/`), so that the project's task runner needs none of the binaries' crates.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap_mangen::roff::{Roff, bold, roman};

/// The name of the hidden subcommand that writes a binary's man pages.
pub const MAN_SUBCOMMAND: &str = "__man";

/// The `--version` text after the name: the version, the commit when the build was given one
/// (`APITAP_GIT_COMMIT` at build time: `cargo xtask image` and the Dockerfile set it; a plain
/// `cargo build` needs no git) and the build profile, e.g. `0.1.0 (commit 50dddf2a1b3c,
/// release build)`. `-V` prints the version alone, as the man pages do.
pub fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(version_text)
}

fn version_text() -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    match option_env!("APITAP_GIT_COMMIT").filter(|c| !c.is_empty()) {
        Some(commit) => format!(
            "{} (commit {commit}, {profile} build)",
            env!("CARGO_PKG_VERSION")
        ),
        None => format!("{} ({profile} build)", env!("CARGO_PKG_VERSION")),
    }
}

/// The man-style sections of one command (binary or subcommand).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Command lines with what each does.
    pub examples: &'static [(&'static str, &'static str)],
    /// Paths the command reads or writes, with what they are.
    pub files: &'static [(&'static str, &'static str)],
    /// Environment variables the program reads, with their effect.
    pub environment: &'static [(&'static str, &'static str)],
    /// Exit codes and when.
    pub exit_status: &'static [(&'static str, &'static str)],
    /// Related pages and documents (`apitap-analyzer(1)`, `deploy/README.md`).
    pub see_also: &'static [&'static str],
}

/// Exit codes every apitap command shares (`anyhow` errors from `main`, clap's usage errors).
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "An error: an unreadable or invalid configuration, a file that cannot be opened, a \
         failure while running. The cause is printed on standard error.",
    ),
    (
        "2",
        "Invalid command line (unknown option, missing argument); the usage is printed.",
    ),
];

/// `RUST_LOG`, read by every binary's log setup.
pub const RUST_LOG: (&str, &str) = (
    "RUST_LOG",
    "Log filter (tracing-subscriber's EnvFilter syntax), e.g. debug or \
     info,apitap_bus=debug. Default: info. Logs go to standard error.",
);

/// `NODE_NAME`, read by the sensor's `[attribution.kubernetes]` (R-CAP-5).
pub const NODE_NAME: (&str, &str) = (
    "NODE_NAME",
    "The Kubernetes node name when attribution.kubernetes.node_name is unset (the DaemonSet \
     sets it from spec.nodeName): selects the pods watched, and is written into every event \
     as sensor.node.",
);
/// `KUBECONFIG`, read by the sensor's Kubernetes client outside a cluster.
pub const KUBECONFIG: (&str, &str) = (
    "KUBECONFIG",
    "kubeconfig the Kubernetes client uses when attribution.kubernetes.kubeconfig is unset and \
     the sensor runs outside a cluster (else ~/.kube/config).",
);
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`, read by OpenSSL (librdkafka's TLS, the PostgreSQL store).
pub const SSL_CERT: [(&str, &str); 2] = [
    (
        "SSL_CERT_FILE",
        "Read by OpenSSL: CA bundle of the system trust store for TLS to Kafka brokers and \
         PostgreSQL servers (default /usr/lib/ssl/cert.pem).",
    ),
    (
        "SSL_CERT_DIR",
        "Read by OpenSSL: directory of hashed CA certificates of the same trust store \
         (default /usr/lib/ssl/certs).",
    ),
];

impl Page {
    fn sections(&self) -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
        let mut out = Vec::new();
        let mut push = |title, items: Vec<(&'static str, &'static str)>| {
            if !items.is_empty() {
                out.push((title, items));
            }
        };
        push("EXAMPLES", self.examples.to_vec());
        push("FILES", self.files.to_vec());
        push("ENVIRONMENT", self.environment.to_vec());
        push("EXIT STATUS", self.exit_status.to_vec());
        push("SEE ALSO", self.see_also.iter().map(|s| (*s, "")).collect());
        out
    }

    /// The sections as `--help` text (clap's `after_long_help`).
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (title, items) in self.sections() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(title);
            text.push_str(":\n");
            if title == "SEE ALSO" {
                let names: Vec<&str> = items.iter().map(|(n, _)| *n).collect();
                for line in wrap(&names.join(", "), 76) {
                    text.push_str(&format!("  {line}\n"));
                }
                continue;
            }
            for (term, what) in items {
                text.push_str(&format!("  {term}\n"));
                for line in wrap(what, 74) {
                    text.push_str(&format!("      {line}\n"));
                }
            }
        }
        text
    }

    fn render_roff(&self, roff: &mut Roff) {
        for (title, items) in self.sections() {
            roff.control("SH", [title]);
            if title == "SEE ALSO" {
                let mut inline = Vec::new();
                for (i, (name, _)) in items.iter().enumerate() {
                    if i > 0 {
                        inline.push(roman(", "));
                    }
                    // `apitap-sensor-run(1)`: the name bold, the section roman.
                    match name.split_once('(') {
                        Some((page, section)) => {
                            inline.push(bold(page));
                            inline.push(roman(format!("({section}")));
                        }
                        None => inline.push(roman(*name)),
                    }
                }
                roff.text(inline);
                continue;
            }
            for (term, what) in items {
                roff.control("TP", []);
                roff.text([bold(term)]);
                roff.text([roman(what)]);
            }
        }
    }
}

/// Roff source in ASCII: other characters as groff's `\[uXXXX]` escapes (troff itself warns
/// on non-ASCII input unless run through preconv).
fn ascii_roff(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

/// Greedy word wrap at `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Writes one man page per command of `cmd` (the binary and every visible subcommand, at any
/// depth) into `dir`, taking each one's [`Page`] from `pages` by its path (`"apitap-sensor"`,
/// `"apitap-sensor run"`, …); a visible command without a page is an error. Returns the files.
pub fn write_man_pages(
    cmd: clap::Command,
    pages: &[(&str, &Page)],
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_page(&cmd, cmd.get_name(), pages, dir, &mut written)?;
    Ok(written)
}

fn write_page(
    cmd: &clap::Command,
    path: &str,
    pages: &[(&str, &Page)],
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let Some((_, page)) = pages.iter().find(|(p, _)| *p == path) else {
        bail!("no man page text for `{path}`");
    };
    let man = clap_mangen::Man::new(cmd.clone()).manual("apitap manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::default();
    page.render_roff(&mut roff);
    roff.to_writer(&mut out)?;
    let file = dir.join(man.get_filename());
    let mut f =
        std::fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?;
    f.write_all(ascii_roff(&String::from_utf8_lossy(&out)).as_bytes())?;
    written.push(file);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(
            sub,
            &format!("{path} {}", sub.get_name()),
            pages,
            dir,
            written,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const PAGE: Page = Page {
        examples: &[("tool run --config /etc/x.toml", "Runs it.")],
        files: &[("/etc/x.toml", "Its configuration.")],
        environment: &[RUST_LOG],
        exit_status: EXIT_STATUS,
        see_also: &["tool-run(1)", "deploy/README.md"],
    };

    #[test]
    fn non_ascii_becomes_groff_escapes() {
        assert_eq!(ascii_roff("a \u{2026} b\n"), "a \\[u2026] b\n");
    }

    #[test]
    fn help_text_has_every_section_in_order() {
        let text = PAGE.render();
        let at = |s: &str| {
            text.find(s)
                .unwrap_or_else(|| panic!("{s} missing: {text}"))
        };
        assert!(at("EXAMPLES:") < at("FILES:"));
        assert!(at("FILES:") < at("ENVIRONMENT:"));
        assert!(at("ENVIRONMENT:") < at("EXIT STATUS:"));
        assert!(at("EXIT STATUS:") < at("SEE ALSO:"));
        assert!(text.contains("  tool-run(1), deploy/README.md\n"), "{text}");
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
    }

    #[test]
    fn every_visible_command_needs_a_page() {
        let cmd = clap::Command::new("tool")
            .subcommand(clap::Command::new("run"))
            .subcommand(clap::Command::new(MAN_SUBCOMMAND).hide(true));
        let dir = std::env::temp_dir().join(format!("cli-doc-{}", std::process::id()));
        let err = write_man_pages(cmd.clone(), &[("tool", &PAGE)], &dir).unwrap_err();
        assert!(err.to_string().contains("`tool run`"), "{err}");
        let files = write_man_pages(cmd, &[("tool", &PAGE), ("tool run", &PAGE)], &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool.1", "tool-run.1"]);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains(".SH EXAMPLES"), "{text}");
        assert!(text.contains("tool\\-run(1)"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
