//! A stand-in for the Kubernetes API server's pod endpoints, for attribution tests: real
//! HTTP/1.1 on a TCP socket inside a test network namespace, answering the list with a
//! recorded `PodList` document and holding watches open (no change arrives), the way
//! kube-apiserver does between changes. Every request line is kept so that a test can check
//! what the sensor asked for (only `GET /api/v1/pods` on its own node).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::Netns;

/// The fake API server; stops on drop.
#[derive(Debug)]
pub struct FakeApiServer {
    /// Port on the namespace's 127.0.0.1.
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeApiServer {
    /// Serves `pod_list` (a `PodList` JSON document) on 127.0.0.1 inside `ns`.
    pub fn start(ns: &Netns, pod_list: String) -> anyhow::Result<FakeApiServer> {
        let netns = std::fs::File::open(format!("/run/netns/{}", ns.name))
            .with_context(|| format!("opening namespace {}", ns.name))?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (reqs, stop2) = (requests.clone(), stop.clone());
        let body = Arc::new(pod_list);
        std::thread::spawn(move || {
            // This thread alone enters the namespace; its sockets are created there.
            // SAFETY: setns with a valid namespace fd, affecting only the calling thread.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let _ = tx.send(Err(format!("setns: {}", std::io::Error::last_os_error())));
                return;
            }
            let listener = match TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
            {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(format!("bind: {e}")));
                    return;
                }
            };
            let _ = tx.send(
                listener
                    .local_addr()
                    .map(|a| a.port())
                    .map_err(|e| e.to_string()),
            );
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (reqs, stop, body) = (reqs.clone(), stop2.clone(), body.clone());
                        std::thread::spawn(move || serve(conn, &reqs, &stop, &body));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(5))
            .context("fake API server did not start")?
            .map_err(|e| anyhow::anyhow!("fake API server: {e}"))?;
        Ok(FakeApiServer {
            port,
            requests,
            stop,
        })
    }

    /// Request lines received so far (`GET /api/v1/pods?... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Writes a kubeconfig for this server (a bearer token, no TLS) into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\nusers:\n- name: sensor\n  user:\n    token: test-token-not-secret\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: sensor\ncurrent-context: fake\n",
                self.port
            ),
        )?;
        Ok(path)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(conn: TcpStream, requests: &Mutex<Vec<String>>, stop: &AtomicBool, pod_list: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // Headers until the empty line; no request of the watcher has a body.
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) if h == "\r\n" || h == "\n" => break,
                Ok(_) => {}
            }
        }
        let line = line.trim_end().to_owned();
        if let Ok(mut r) = requests.lock() {
            r.push(line.clone());
        }
        let target = line.split(' ').nth(1).unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let result = if line.starts_with("GET ") && path == "/api/v1/pods" && watch {
            hold_watch(&mut out, stop)
        } else if line.starts_with("GET ") && path == "/api/v1/pods" {
            respond(&mut out, "200 OK", pod_list)
        } else {
            respond(
                &mut out,
                "403 Forbidden",
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}"#,
            )
        };
        if result.is_err() {
            return;
        }
    }
}

fn respond(out: &mut TcpStream, status: &str, body: &str) -> anyhow::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// A watch with nothing to report: headers, then silence until the test ends.
fn hold_watch(out: &mut TcpStream, stop: &AtomicBool) -> anyhow::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )?;
    out.flush()?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("stopped")
}
