//! The ledger file: reservations of live peapod processes, under a lock.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{AdmissionError, Capacity};

/// One pod's reservation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Pod name (unique among live entries).
    pub pod: String,
    /// The process that holds the reservation (the pod's VMM/monitor).
    pub pid: u32,
    /// That process's start time (clock ticks since boot), so a recycled
    /// pid is not mistaken for the owner.
    pub start_time: u64,
    /// Reserved memory in bytes: the whole VM.
    pub memory: u64,
    /// Reserved CPU in millicores.
    pub millicpu: u64,
}

/// Start time of a process (field 22 of /proc/PID/stat), if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past
    // its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Entry {
    /// Whether the owner is still the process that made the entry.
    pub fn is_live(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

/// The ledger of one user.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> AdmissionError + 'a {
    move |source| AdmissionError::Ledger {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The runtime directory must be ours and private: in a shared temp
/// directory, another user could have made it first.
pub fn check_private(dir: &Path) -> Result<(), AdmissionError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.file_type().is_symlink() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(AdmissionError::Ledger {
            action: "trust",
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "it is not a private directory of this user (owner, mode 0700, no symlink); \
                 remove it or set XDG_RUNTIME_DIR to a directory of yours",
            ),
        });
    }
    Ok(())
}

/// A held lock on the ledger (released on drop, when the file closes).
struct Locked {
    _file: File,
}

impl Ledger {
    /// A ledger kept in `dir` (created 0700 when first used).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Ledger { dir: dir.into() }
    }

    /// peapod's per-user runtime directory: `$XDG_RUNTIME_DIR/peapod`, else
    /// `/run/user/UID/peapod`, else a private directory in the temp dir.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return Path::new(&d).join("peapod");
        }
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let run_user = PathBuf::from(format!("/run/user/{uid}"));
        if run_user.is_dir() {
            return run_user.join("peapod");
        }
        std::env::temp_dir().join(format!("peapod-{uid}"))
    }

    fn file(&self) -> PathBuf {
        self.dir.join(".ledger.json")
    }

    fn lock(&self) -> Result<Locked, AdmissionError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err("create the directory of", &self.dir))?;
        check_private(&self.dir)?;
        let path = self.dir.join(".ledger.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open the lock of", &path))?;
        // SAFETY: flock on an fd we own; blocks until the lock is ours.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err("lock", &path)(std::io::Error::last_os_error()));
        }
        Ok(Locked { _file: file })
    }

    fn load(&self, _lock: &Locked) -> Result<Vec<Entry>, AdmissionError> {
        let path = self.file();
        match std::fs::read(&path) {
            Ok(bytes) if bytes.is_empty() => Ok(Vec::new()),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io_err("parse (remove it if no pod is running)", &path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e,
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn store(&self, _lock: &Locked, entries: &[Entry]) -> Result<(), AdmissionError> {
        let path = self.file();
        let tmp = self.dir.join(".ledger.json.tmp");
        let bytes = serde_json::to_vec_pretty(entries).expect("entries serialize");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("write", &tmp))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_data())
            .map_err(io_err("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("replace", &path))
    }

    /// The live reservations; entries of dead owners are dropped from the file.
    pub fn entries(&self) -> Result<Vec<Entry>, AdmissionError> {
        let lock = self.lock()?;
        let all = self.load(&lock)?;
        let live: Vec<Entry> = all.iter().filter(|e| e.is_live()).cloned().collect();
        if live.len() != all.len() {
            self.store(&lock, &live)?;
        }
        Ok(live)
    }

    /// Whether `pod` would be admitted now (its name free, `memory` and
    /// `millicpu` fitting), without reserving anything.
    pub fn check(
        &self,
        pod: &str,
        memory: u64,
        millicpu: u64,
        capacity: &Capacity,
    ) -> Result<(), AdmissionError> {
        let lock = self.lock()?;
        self.admit(&lock, pod, memory, millicpu, capacity)
            .map(|_| ())
    }

    /// Reserve `memory` bytes and `millicpu` for `pod`, owned by this
    /// process, or fail without changing anything.
    pub fn reserve(
        &self,
        pod: &str,
        memory: u64,
        millicpu: u64,
        capacity: &Capacity,
    ) -> Result<Reservation, AdmissionError> {
        let pid = std::process::id();
        let start_time = process_start_time(pid).unwrap_or(0);
        let lock = self.lock()?;
        let mut live = self.admit(&lock, pod, memory, millicpu, capacity)?;
        let entry = Entry {
            pod: pod.to_string(),
            pid,
            start_time,
            memory,
            millicpu,
        };
        live.push(entry.clone());
        self.store(&lock, &live)?;
        Ok(Reservation {
            ledger: self.clone(),
            entry: Some(entry),
        })
    }

    /// The live entries, if `pod` fits next to them.
    fn admit(
        &self,
        lock: &Locked,
        pod: &str,
        memory: u64,
        millicpu: u64,
        capacity: &Capacity,
    ) -> Result<Vec<Entry>, AdmissionError> {
        let live: Vec<Entry> = self
            .load(lock)?
            .into_iter()
            .filter(Entry::is_live)
            .collect();
        if let Some(e) = live.iter().find(|e| e.pod == pod) {
            return Err(AdmissionError::NameTaken {
                pod: pod.to_string(),
                pid: e.pid,
            });
        }
        let used_mem: u64 = live.iter().map(|e| e.memory).sum();
        let used_cpu: u64 = live.iter().map(|e| e.millicpu).sum();
        if used_mem.saturating_add(memory) > capacity.memory
            || used_cpu.saturating_add(millicpu) > capacity.millicpu
        {
            return Err(AdmissionError::Insufficient {
                pod: pod.to_string(),
                asked_memory: memory,
                asked_millicpu: millicpu,
                capacity: capacity.clone(),
                holders: live,
            });
        }
        Ok(live)
    }
}

/// A reservation, released when dropped (and reclaimed by the next reader
/// if its process dies without dropping it).
#[derive(Debug)]
pub struct Reservation {
    ledger: Ledger,
    entry: Option<Entry>,
}

impl Reservation {
    /// What is reserved.
    pub fn entry(&self) -> Option<&Entry> {
        self.entry.as_ref()
    }

    /// Give the reservation back now.
    pub fn release(mut self) -> Result<(), AdmissionError> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<(), AdmissionError> {
        let Some(mine) = self.entry.take() else {
            return Ok(());
        };
        let lock = self.ledger.lock()?;
        let mut entries = self.ledger.load(&lock)?;
        entries.retain(|e| e != &mine && e.is_live());
        self.ledger.store(&lock, &entries)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Err(e) = self.release_inner() {
            log::warn!("cannot release the reservation: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::CapacitySource;

    fn tmp_ledger(tag: &str) -> (Ledger, PathBuf) {
        let dir = std::env::temp_dir().join(format!("peapod-ledger-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Ledger::new(&dir), dir)
    }

    fn cap(memory: u64, millicpu: u64) -> Capacity {
        Capacity {
            memory,
            millicpu,
            source: CapacitySource::Configured("test".into()),
        }
    }

    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;

    #[test]
    fn test_ledger_seed_pod_refused_whole_on_small_node() {
        // The seed's example: App (1 GiB) + LogCollector (0.5 GiB) on a node
        // with 1.25 GiB: refused as a whole; with 2 GiB it fits.
        let (ledger, dir) = tmp_ledger("seed");
        let pod_mem = GI + 512 * MI;
        let err = ledger
            .reserve("app", pod_mem, 0, &cap(GI + 256 * MI, 2000))
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AdmissionError::Insufficient { .. }), "{msg}");
        assert!(
            msg.contains("1536 MiB") && msg.contains("1280 MiB"),
            "{msg}"
        );
        assert!(ledger.entries().unwrap().is_empty(), "nothing reserved");
        let r = ledger
            .reserve("app", pod_mem, 0, &cap(2 * GI, 2000))
            .unwrap();
        assert_eq!(ledger.entries().unwrap().len(), 1);
        drop(r);
        assert!(ledger.entries().unwrap().is_empty(), "released on drop");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_ledger_counts_other_pods_and_names_them() {
        let (ledger, dir) = tmp_ledger("others");
        let _a = ledger.reserve("a", GI, 500, &cap(2 * GI, 2000)).unwrap();
        let err = ledger
            .reserve("b", GI + MI, 0, &cap(2 * GI, 2000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("held by: a (1024 MiB, 500m CPU"), "{err}");
        assert!(err.contains("free: 1024 MiB of 2048 MiB"), "{err}");
        let err = ledger
            .reserve("c", MI, 1600, &cap(2 * GI, 2000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1600m CPU") && err.contains("1500m of 2000m"),
            "{err}"
        );
        let _b = ledger.reserve("b", GI, 1500, &cap(2 * GI, 2000)).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_ledger_refuses_duplicate_live_name() {
        let (ledger, dir) = tmp_ledger("name");
        let _a = ledger.reserve("web", MI, 0, &cap(GI, 1000)).unwrap();
        let err = ledger.reserve("web", MI, 0, &cap(GI, 1000)).unwrap_err();
        assert!(matches!(err, AdmissionError::NameTaken { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_ledger_reclaims_entries_of_dead_processes() {
        let (ledger, dir) = tmp_ledger("stale");
        // A reservation whose owner died without releasing it (kill -9):
        // a child process that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let ghost = Entry {
            pod: "ghost".into(),
            pid: dead_pid,
            start_time: 1,
            memory: GI,
            millicpu: 1000,
        };
        // And one whose pid was recycled: our own pid with another start time.
        let recycled = Entry {
            pod: "recycled".into(),
            pid: std::process::id(),
            start_time: 0,
            memory: GI,
            millicpu: 0,
        };
        {
            let lock = ledger.lock().unwrap();
            ledger.store(&lock, &[ghost, recycled]).unwrap();
        }
        let r = ledger
            .reserve("ghost", 2 * GI, 1000, &cap(2 * GI, 1000))
            .unwrap();
        assert_eq!(ledger.entries().unwrap().len(), 1);
        r.release().unwrap();
        assert!(ledger.entries().unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_ledger_is_atomic_across_threads() {
        // 8 reservers race for room for 3: exactly 3 win.
        let (ledger, dir) = tmp_ledger("race");
        let wins: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let ledger = ledger.clone();
                    s.spawn(move || {
                        ledger
                            .reserve(&format!("p{i}"), GI, 0, &cap(3 * GI, 1000))
                            .map(std::mem::forget)
                            .is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_ledger_refuses_a_directory_others_can_enter() {
        let (ledger, dir) = tmp_ledger("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let err = ledger.reserve("x", MI, 0, &cap(GI, 1000)).unwrap_err();
        let why = std::error::Error::source(&err).unwrap().to_string();
        assert!(err.to_string().contains("cannot trust"), "{err}");
        assert!(why.contains("not a private directory"), "{why}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_ledger_corrupt_file_is_a_clear_error() {
        let (ledger, dir) = tmp_ledger("corrupt");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .unwrap();
        std::fs::write(dir.join(".ledger.json"), b"{not json").unwrap();
        let err = ledger
            .reserve("x", MI, 0, &cap(GI, 1000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ledger.json") && err.contains("remove it if no pod is running"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn test_process_start_time_of_self() {
        assert!(process_start_time(std::process::id()).is_some());
        assert_eq!(process_start_time(u32::MAX), None);
    }
}
