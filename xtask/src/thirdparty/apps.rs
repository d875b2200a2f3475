//! The third-party applications: how each is set up (data, accounts) and started, from
//! the cached venv (PyPI) or Debian.

use super::*;

/// One third-party application of the lab.
pub(super) struct App {
    pub(super) name: &'static str,
    /// What it is (for the manifest and README).
    pub(super) title: &'static str,
    /// Distribution whose version the manifest records (pip; `deb:` prefix for Debian).
    pub(super) package: &'static str,
    pub(super) port: u16,
    /// How a failed login looks: `401`, `basic`, `200_body`, `302`, or `none`.
    pub(super) login_style: &'static str,
    /// The monitoring poller's JSON URL.
    pub(super) poll_path: &'static str,
}

pub(super) const APPS: &[App] = &[
    App {
        name: "httpbin",
        title: "httpbin (psf/httpbin) under gunicorn: HTTP Basic auth on /basic-auth/{user}/{passwd}, linked pages /links/{n}/{offset}",
        package: "httpbin",
        port: 8000,
        login_style: "basic",
        poll_path: "/ip",
    },
    App {
        name: "django",
        title: "Django admin (django.contrib.admin, minimal project under tests/thirdparty/django_site) under gunicorn: form login with CSRF at /admin/login/",
        package: "Django",
        port: 8000,
        login_style: "200_body",
        poll_path: "/healthz",
    },
    App {
        name: "fab",
        title: "Flask-AppBuilder (tests/thirdparty/fab_app: one Contact model) under gunicorn: form login /login/ and REST API POST /api/v1/security/login",
        package: "flask-appbuilder",
        port: 8000,
        login_style: "302",
        poll_path: "/api/v1/contact/?q=(page:0,page_size:5,order_column:id,order_direction:desc)",
    },
    App {
        name: "datasette",
        title: "Datasette serving a Faker zh_CN shop database (customers, orders): HTML table and row pages, JSON API",
        package: "datasette",
        port: 8001,
        login_style: "none",
        poll_path: "/shop/orders.json?_sort_desc=id&_size=5",
    },
    App {
        name: "deluge",
        title: "deluge-web (Debian): JSON-RPC POST /json, auth.login answers 200 {\"result\": false} on failure, true + _session_id cookie on success",
        package: "deb:deluge-web",
        port: 8112,
        login_style: "200_body",
        poll_path: "/json",
    },
];

pub(super) fn app(name: &str) -> anyhow::Result<&'static App> {
    APPS.iter().find(|a| a.name == name).with_context(|| {
        format!(
            "unknown app {name}; known: {}",
            APPS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
        )
    })
}

/// `tests/thirdparty/<file>`.
pub(super) fn setup_file(file: &str) -> PathBuf {
    workspace_root().join("tests/thirdparty").join(file)
}

/// The cached venv with the PyPI applications (`target/thirdparty-venv`).
pub(super) fn venv() -> PathBuf {
    workspace_root().join("target/thirdparty-venv")
}

pub(super) fn venv_bin(program: &str) -> String {
    venv()
        .join("bin")
        .join(program)
        .to_string_lossy()
        .into_owned()
}

/// Creates the venv and installs `tests/thirdparty/requirements.txt` unless everything is
/// already importable.
pub(super) fn ensure_venv() -> anyhow::Result<()> {
    let probe = || {
        Command::new(venv_bin("python"))
            .args([
                "-c",
                "import httpbin, gunicorn, django, flask_appbuilder, datasette, faker",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if probe() {
        return Ok(());
    }
    if !venv().join("bin/python").exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv())
            .status()
            .context("python3 -m venv")?
            .success();
        if !ok {
            bail!("python3 -m venv {} failed", venv().display());
        }
    }
    eprintln!(
        "+ pip install -r tests/thirdparty/requirements.txt (into {})",
        venv().display()
    );
    let ok = Command::new(venv_bin("pip"))
        .args(["install", "-q", "-r"])
        .arg(setup_file("requirements.txt"))
        .status()
        .context("running pip")?
        .success();
    if !ok || !probe() {
        bail!("installing the third-party applications into the venv failed");
    }
    Ok(())
}

/// Version of an application (pip metadata, or the Debian package).
pub(super) fn app_version(app: &App) -> String {
    if let Some(deb) = app.package.strip_prefix("deb:") {
        return Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", deb])
            .output()
            .ok()
            .map(|o| {
                format!(
                    "{deb} {} (Debian)",
                    String::from_utf8_lossy(&o.stdout).trim()
                )
            })
            .unwrap_or_default();
    }
    Command::new(venv_bin("python"))
        .args([
            "-c",
            &format!(
                "import importlib.metadata as m; print('{0} ' + m.version('{0}'))",
                app.package
            ),
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn run_setup(mut cmd: Command, what: &str, dir: &Path) -> anyhow::Result<()> {
    let log = std::fs::File::create(dir.join(format!("setup-{what}.log")))?;
    let ok = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running the {what} setup"))?
        .success();
    if !ok {
        bail!(
            "{what} setup failed; see {}",
            dir.join(format!("setup-{what}.log")).display()
        );
    }
    Ok(())
}

/// Prepares the application's data in `dir` (accounts, database) and returns the command
/// that serves it, as (program, args, env, cwd).
pub(super) fn prepare(app: &App, dir: &Path) -> anyhow::Result<ServerCmd> {
    let accounts = dir.join("accounts.json");
    let mut make = Command::new(venv_bin("python"));
    make.arg(setup_file("gen_data.py"))
        .args(["accounts", "--out"])
        .arg(&accounts);
    run_setup(make, "accounts", dir)?;
    let bind = format!("{SERVER_IP}:{}", app.port);
    let lab_dir = dir.to_string_lossy().into_owned();
    Ok(match app.name {
        "httpbin" => ServerCmd {
            program: venv_bin("gunicorn"),
            args: strings(&["-w", "3", "-b", &bind, "httpbin:app"]),
            env: vec![],
            cwd: dir.to_path_buf(),
            shown: format!("gunicorn -w 3 -b {bind} httpbin:app"),
        },
        "django" => {
            let mut c = Command::new(venv_bin("python"));
            c.arg(setup_file("django_site/setup_site.py"))
                .arg("--accounts")
                .arg(&accounts)
                .env("LAB_DIR", dir);
            run_setup(c, "django", dir)?;
            ServerCmd {
                program: venv_bin("gunicorn"),
                args: strings(&["-w", "3", "-b", &bind, "wsgi"]),
                env: vec![("LAB_DIR".into(), lab_dir)],
                cwd: setup_file("django_site"),
                shown: format!(
                    "cd tests/thirdparty/django_site && python3 setup_site.py --accounts accounts.json && gunicorn -w 3 -b {bind} wsgi"
                ),
            }
        }
        "fab" => {
            let mut c = Command::new(venv_bin("python"));
            c.arg(setup_file("fab_app/setup_app.py"))
                .arg("--accounts")
                .arg(&accounts)
                .env("LAB_DIR", dir);
            run_setup(c, "fab", dir)?;
            ServerCmd {
                program: venv_bin("gunicorn"),
                args: strings(&["-w", "3", "-b", &bind, "app:create_app()"]),
                env: vec![("LAB_DIR".into(), lab_dir)],
                cwd: setup_file("fab_app"),
                shown: format!(
                    "cd tests/thirdparty/fab_app && python3 setup_app.py --accounts accounts.json && gunicorn -w 3 -b {bind} 'app:create_app()'"
                ),
            }
        }
        "datasette" => {
            let db = dir.join("shop.db");
            let mut c = Command::new(venv_bin("python"));
            c.arg(setup_file("datasette/make_db.py"))
                .arg("--out")
                .arg(&db);
            run_setup(c, "datasette", dir)?;
            let meta = setup_file("datasette/metadata.json");
            ServerCmd {
                program: venv_bin("datasette"),
                args: vec![
                    "serve".into(),
                    db.to_string_lossy().into_owned(),
                    "-h".into(),
                    SERVER_IP.into(),
                    "-p".into(),
                    app.port.to_string(),
                    "--metadata".into(),
                    meta.to_string_lossy().into_owned(),
                    // 20 rows a page (default 100): the captures stay small.
                    "--setting".into(),
                    "default_page_size".into(),
                    "20".into(),
                ],
                env: vec![],
                cwd: dir.to_path_buf(),
                shown: format!(
                    "python3 tests/thirdparty/datasette/make_db.py --out shop.db && datasette serve shop.db -h {SERVER_IP} -p {} --metadata tests/thirdparty/datasette/metadata.json --setting default_page_size 20",
                    app.port
                ),
            }
        }
        _ => {
            let conf = dir.join("deluge");
            std::fs::create_dir_all(&conf)?;
            ServerCmd {
                program: "deluge-web".into(),
                args: vec![
                    "-d".into(),
                    "-c".into(),
                    conf.to_string_lossy().into_owned(),
                    "-i".into(),
                    SERVER_IP.into(),
                    "-p".into(),
                    app.port.to_string(),
                    "-L".into(),
                    "warning".into(),
                ],
                env: vec![],
                cwd: dir.to_path_buf(),
                shown: format!(
                    "deluge-web -d -c deluge -i {SERVER_IP} -p {} -L warning   # then auth.change_password from the default to the lab's web password",
                    app.port
                ),
            }
        }
    })
}

/// How to start one application server.
pub(super) struct ServerCmd {
    pub(super) program: String,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) cwd: PathBuf,
    /// The command as the manifest records it.
    pub(super) shown: String,
}
