//! cgroup v2 ids to paths, and paths to what they name: systemd unit, container, pod.
//!
//! The kernel gives a socket's cgroup as its id (`bpf_skb_cgroup_id`), which on cgroup v2 is
//! the inode number of the cgroup's directory. Resolving it by handle (`open_by_handle_at`)
//! would need `CAP_DAC_READ_SEARCH`, which the sensor has dropped, so the resolver walks the
//! hierarchy once and rescans (at most once a second) when it meets an id it does not know.
//! The path's components then say who owns it; the layouts are those of the kubelet's two
//! cgroup drivers (systemd: `kubepods.slice/kubepods-burstable.slice/
//! kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`; cgroupfs:
//! `kubepods/burstable/pod<uid>/<id>`) and of Docker and Podman.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// `statfs` magic of a cgroup v2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Directories visited per scan at most (a node runs a few thousand cgroups).
const MAX_SCAN_ENTRIES: usize = 200_000;
/// Nesting walked at most (the kernel's own default `cgroup.max.depth` is unlimited, real
/// hierarchies are under 10 deep).
const MAX_DEPTH: usize = 32;
/// Shortest time between two scans triggered by unknown ids.
const RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Processes read per cgroup for their command names.
const MAX_PIDS: usize = 64;
/// Distinct command names kept per cgroup.
pub const MAX_PROCESS_NAMES: usize = 8;

/// The cgroup v2 mount: `configured`, or `/sys/fs/cgroup` when it is cgroup v2, or
/// `/sys/fs/cgroup/unified` (hybrid hosts). Errors name the field to set.
pub fn find_root(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match configured {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from("/sys/fs/cgroup"),
            PathBuf::from("/sys/fs/cgroup/unified"),
        ],
    };
    for c in &candidates {
        if is_cgroup2(c) {
            return Ok(c.clone());
        }
    }
    bail!(
        "`attribution.cgroup_root`: no cgroup v2 hierarchy at {} (set it to the cgroup2 mount, or attribution.enabled = false)",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

fn is_cgroup2(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: valid NUL-terminated path and a buffer of the right type.
    if unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs succeeded and filled the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // `f_type` is i64 here, other widths elsewhere
    let magic = st.f_type as i64;
    magic == CGROUP2_SUPER_MAGIC
}

/// The id of the cgroup at `path` (its directory's inode number).
pub fn id_of(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .ino())
}

/// cgroup ids to paths relative to the hierarchy's root (`/` for the root itself).
#[derive(Debug)]
pub struct Resolver {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
    /// Scans done so far.
    pub scans: u64,
}

impl Resolver {
    /// A resolver over the hierarchy mounted at `root`; nothing is read yet.
    pub fn new(root: PathBuf) -> Resolver {
        Resolver {
            root,
            paths: HashMap::new(),
            last_scan: None,
            scans: 0,
        }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of cgroup `id`, scanning the hierarchy again if it is unknown and the last scan
    /// is older than a second. `None`: no such cgroup (it may have been removed already).
    pub fn path(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        if self
            .last_scan
            .is_some_and(|t| t.elapsed() < RESCAN_INTERVAL)
        {
            return None;
        }
        self.scan();
        self.paths.get(&id).cloned()
    }

    /// Walks the whole hierarchy (bounded in entries and depth), replacing the id table.
    pub fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.scans += 1;
        let mut paths = HashMap::new();
        let mut stack: Vec<(PathBuf, String, usize)> = vec![(self.root.clone(), String::new(), 0)];
        while let Some((dir, rel, depth)) = stack.pop() {
            if paths.len() >= MAX_SCAN_ENTRIES {
                break;
            }
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            paths.insert(
                meta.ino(),
                if rel.is_empty() {
                    "/".into()
                } else {
                    rel.clone()
                },
            );
            if depth >= MAX_DEPTH {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                // Control files are regular files; child cgroups are the directories.
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && let Some(name) = e.file_name().to_str()
                {
                    stack.push((e.path(), format!("{rel}/{name}"), depth + 1));
                }
            }
        }
        self.paths = paths;
    }

    /// Distinct command names of the processes in cgroup `rel` (sorted, at most
    /// [`MAX_PROCESS_NAMES`]); empty when none is visible from this PID namespace.
    pub fn processes(&self, rel: &str) -> Vec<String> {
        let file = self
            .root
            .join(rel.trim_start_matches('/'))
            .join("cgroup.procs");
        let Ok(text) = std::fs::read_to_string(file) else {
            return Vec::new();
        };
        let mut names: Vec<String> = text
            .lines()
            .take(MAX_PIDS)
            .filter_map(|pid| pid.trim().parse::<u32>().ok())
            .filter(|pid| *pid != 0)
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .map(|c| c.trim_end().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        names.sort();
        names.dedup();
        names.truncate(MAX_PROCESS_NAMES);
        names
    }
}

/// What a cgroup path names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFacts {
    /// systemd unit (`*.service`, `*.scope`) that is not a container's scope.
    pub unit: Option<String>,
    /// 64 lowercase hex digits.
    pub container_id: Option<String>,
    /// `containerd`, `cri-o`, `docker`, `podman`, when the path names the runtime.
    pub container_runtime: Option<&'static str>,
    /// Pod UID with dashes (the systemd driver writes underscores).
    pub pod_uid: Option<String>,
}

/// Reads the unit, container and pod out of a cgroup path.
pub fn parse_path(path: &str) -> PathFacts {
    let mut f = PathFacts::default();
    let mut parent = "";
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if let Some((runtime, id)) = container_scope(comp) {
            f.container_id = Some(id.to_owned());
            f.container_runtime = Some(runtime);
        } else if is_container_id(comp) {
            // cgroupfs driver: the bare id, under the pod or the engine's own directory.
            f.container_id = Some(comp.to_owned());
            f.container_runtime = match parent {
                "docker" => Some("docker"),
                "libpod_parent" => Some("podman"),
                _ => f.container_runtime,
            };
        } else if let Some(uid) = pod_component(comp) {
            f.pod_uid = Some(uid);
        } else if comp.ends_with(".service") || comp.ends_with(".scope") {
            f.unit = Some(comp.to_owned());
        }
        parent = comp;
    }
    f
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, `libpod-<id>.scope`.
fn container_scope(comp: &str) -> Option<(&'static str, &str)> {
    let stem = comp.strip_suffix(".scope")?;
    for (prefix, runtime) in [
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("docker-", "docker"),
        ("libpod-", "podman"),
    ] {
        if let Some(id) = stem.strip_prefix(prefix)
            && is_container_id(id)
        {
            return Some((runtime, id));
        }
    }
    None
}

/// `kubepods-besteffort-pod<uid>.slice`, `kubepods-pod<uid>.slice` (systemd driver, dashes
/// written as underscores) or `pod<uid>` (cgroupfs driver).
fn pod_component(comp: &str) -> Option<String> {
    let raw = if let Some(stem) = comp.strip_suffix(".slice") {
        let stem = stem.strip_prefix("kubepods-")?;
        let at = stem.find("pod")?;
        &stem[at + 3..]
    } else {
        comp.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    let is_uid = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    is_uid.then(|| uid.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::skip;

    const ID: &str = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";

    #[test]
    fn kubelet_systemd_driver_with_containerd() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a1e2f3c_1b2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope"
        );
        let f = parse_path(&p);
        assert_eq!(f.container_id.as_deref(), Some(ID));
        assert_eq!(f.container_runtime, Some("containerd"));
        assert_eq!(
            f.pod_uid.as_deref(),
            Some("6a1e2f3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(
            f.unit, None,
            "a container's scope is not reported as a unit"
        );
    }

    #[test]
    fn kubelet_guaranteed_pod_and_cri_o() {
        let p = format!(
            "/kubepods.slice/kubepods-pod0b1c2d3e_4f5a_6b7c_8d9e_0f1a2b3c4d5e.slice/crio-{ID}.scope"
        );
        let f = parse_path(&p);
        assert_eq!(f.container_runtime, Some("cri-o"));
        assert_eq!(
            f.pod_uid.as_deref(),
            Some("0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e")
        );
    }

    #[test]
    fn kubelet_cgroupfs_driver() {
        let p = format!("/kubepods/besteffort/pod0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e/{ID}");
        let f = parse_path(&p);
        assert_eq!(f.container_id.as_deref(), Some(ID));
        assert_eq!(f.container_runtime, None, "the path does not name it");
        assert_eq!(
            f.pod_uid.as_deref(),
            Some("0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e")
        );
    }

    #[test]
    fn docker_podman_and_plain_units() {
        let f = parse_path(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(
            (f.container_runtime, f.unit.as_deref()),
            (Some("docker"), None)
        );
        assert_eq!(
            parse_path(&format!("/docker/{ID}")).container_runtime,
            Some("docker")
        );
        let f = parse_path(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(f.container_runtime, Some("podman"));
        let f = parse_path("/system.slice/nginx.service");
        assert_eq!(f.unit.as_deref(), Some("nginx.service"));
        assert_eq!(f.container_id, None);
        assert_eq!(parse_path("/"), PathFacts::default());
        // Look-alikes stay what they are: a short hex name, a pod-ish word, an upper-case id.
        let f = parse_path("/user.slice/pod1234/deadbeef/podcast.service");
        assert_eq!(f.pod_uid, None);
        assert_eq!(f.container_id, None);
        assert_eq!(f.unit.as_deref(), Some("podcast.service"));
        assert_eq!(
            parse_path(&format!("/x/{}", ID.to_uppercase())).container_id,
            None
        );
    }

    /// The resolver on the real hierarchy of this machine: the root is `/`, a cgroup made for
    /// the test is found by its inode after a rescan, and its processes are listed by name.
    #[test]
    fn resolves_ids_on_the_real_hierarchy() {
        let Ok(root) = find_root(None) else {
            return skip("no cgroup v2 hierarchy on this machine");
        };
        let mut r = Resolver::new(root.clone());
        assert_eq!(r.path(id_of(&root).unwrap()).as_deref(), Some("/"));
        let name = format!("apitap-unit-{}", std::process::id());
        let dir = root.join(&name);
        if let Err(e) = std::fs::create_dir(&dir) {
            return skip(&format!("cannot create a cgroup: {e}"));
        }
        let id = id_of(&dir).unwrap();
        // Unknown until a rescan is allowed (the first scan was just now).
        assert_eq!(r.path(id), None);
        r.last_scan = None;
        assert_eq!(r.path(id).as_deref(), Some(format!("/{name}").as_str()));
        assert!(r.processes(&format!("/{name}")).is_empty());
        std::fs::remove_dir(&dir).unwrap();
    }
}
