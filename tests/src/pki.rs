//! Test certificates made by the `openssl` command: a site CA with a server certificate for
//! `localhost`/`127.0.0.1` and an analyst's client certificate, and a second, foreign CA
//! with an intruder's certificate (mutual TLS tests, issue 20).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The client certificate's common name.
pub const ANALYST_CN: &str = "analyst-7";

/// The files of a test PKI in one directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Signs `leaf` (`subject`, `subjectAltName = san`) with the CA `ca`, creating the CA first
/// if needed. Keys are mode 0600.
fn issue(dir: &Path, ca: &str, leaf: &str, subject: &str, san: &str) -> anyhow::Result<()> {
    let (ca_key, ca_crt) = (format!("{ca}.key"), format!("{ca}.crt"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    if !dir.join(&ca_crt).exists() {
        let subj = format!("/CN={ca}");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout", &ca_key, "-out", &ca_crt, "-days", "2", "-subj", &subj,
        ]);
        openssl(dir, &args)?;
    }
    let (key, csr, crt, ext) = (
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
        format!("{leaf}.crt"),
        format!("{leaf}.ext"),
    );
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &args)?;
    std::fs::write(dir.join(&ext), format!("subjectAltName={san}\n"))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    )?;
    for k in [key, ca_key] {
        std::fs::set_permissions(dir.join(k), std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

impl TestPki {
    /// Makes the PKI in `dir` (created if needed): `site-ca.crt`; `server.{crt,key}`
    /// (CN apitap-analyzer, SAN localhost and 127.0.0.1) and `analyst.{crt,key}`
    /// (CN [`ANALYST_CN`]) signed by it; `other-ca.crt` and `intruder.{crt,key}` signed by
    /// that one.
    pub fn make(dir: &Path) -> anyhow::Result<TestPki> {
        std::fs::create_dir_all(dir)?;
        issue(
            dir,
            "site-ca",
            "server",
            "/CN=apitap-analyzer",
            "DNS:localhost,IP:127.0.0.1",
        )?;
        issue(
            dir,
            "site-ca",
            "analyst",
            &format!("/CN={ANALYST_CN}/O=bank"),
            "email:a7@bank.example",
        )?;
        issue(dir, "other-ca", "intruder", "/CN=intruder", "DNS:intruder")?;
        Ok(TestPki {
            dir: dir.to_owned(),
        })
    }

    /// A file of the PKI, e.g. `site-ca.crt`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// `curl` arguments trusting the site CA and presenting `leaf`'s certificate (`None`:
    /// none).
    pub fn curl_args(&self, leaf: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--cacert".to_owned(),
            self.path("site-ca.crt").display().to_string(),
        ];
        if let Some(leaf) = leaf {
            args.extend([
                "--cert".to_owned(),
                self.path(&format!("{leaf}.crt")).display().to_string(),
                "--key".to_owned(),
                self.path(&format!("{leaf}.key")).display().to_string(),
            ]);
        }
        args
    }
}
