//! The command-line contract, without privileges: configuration errors name the field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::process::Command;

fn sensor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apitap-sensor"))
}

fn check(text: &str) -> (bool, String) {
    let dir =
        std::env::temp_dir().join(format!("apitap-cli-{}-{}", std::process::id(), text.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sensor.toml");
    std::fs::write(&path, text).unwrap();
    let out = sensor()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_config_passes() {
    let (ok, err) = check("[capture]\ninterfaces = [\"eth0\"]\n");
    assert!(ok, "{err}");
}

#[test]
fn errors_name_the_field() {
    for (text, field) in [
        (
            "[capture]\ninterfaces = [\"eth0\"]\nsnap_len = 5\n",
            "snap_len",
        ),
        (
            "[capture]\ninterfaces = [\"eth0\"]\nsnap_len_bytes = 0\n",
            "capture.snap_len_bytes",
        ),
        (
            "[capture]\ninterfaces = [\"eth0\"]\n[decode]\ngap_timeout_ms = -1\n",
            "gap_timeout_ms",
        ),
        ("[capture]\ninterfaces = []\n", "capture.interfaces"),
        (
            "[metrics]\nlisten = \"not an address\"\n[capture]\ninterfaces = [\"e\"]\n",
            "listen",
        ),
    ] {
        let (ok, err) = check(text);
        assert!(!ok, "{text} should fail");
        assert!(
            err.contains(field),
            "{text}: error does not name {field}: {err}"
        );
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = sensor()
        .args(["check-config", "--config", "/nonexistent/apitap.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/apitap.toml"));
}
