//! Registry credentials, in the files podman and docker write: `{"auths":
//! {"REGISTRY": {"auth": base64("USER:PASSWORD")}}}`.
//!
//! Read from `--authfile`, else `$REGISTRY_AUTH_FILE`, else
//! `${XDG_RUNTIME_DIR}/containers/auth.json`,
//! `~/.config/containers/auth.json` and `~/.docker/config.json`, the first
//! with an entry for the registry winning. `peapod login` writes where
//! podman does: `--authfile`, else `$REGISTRY_AUTH_FILE`, else
//! `${XDG_RUNTIME_DIR}/containers/auth.json` (else
//! `~/.config/containers/auth.json`), mode 0600, other entries kept.

use std::path::{Path, PathBuf};

use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value};

/// The credentials a pull uses, and where they came from.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// What to send.
    pub auth: RegistryAuth,
    /// The file they came from; `None`: anonymous.
    pub source: Option<PathBuf>,
    /// The files looked in.
    pub tried: Vec<PathBuf>,
}

impl Credentials {
    /// For an error: which credentials were used.
    pub fn describe(&self) -> String {
        match &self.source {
            Some(file) => format!("with the credentials in {}", file.display()),
            None if self.tried.is_empty() => "anonymously: no credentials file".to_owned(),
            None => {
                let files: Vec<String> =
                    self.tried.iter().map(|p| p.display().to_string()).collect();
                format!("anonymously: no credentials for it in {}", files.join(", "))
            }
        }
    }
}

/// The files read, in order.
fn read_order(auth_file: Option<&Path>) -> Vec<PathBuf> {
    if let Some(f) = auth_file {
        return vec![f.to_owned()];
    }
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        return vec![f.into()];
    }
    let mut files = Vec::new();
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        files.push(PathBuf::from(run).join("containers/auth.json"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        files.push(home.join(".config/containers/auth.json"));
        files.push(home.join(".docker/config.json"));
    }
    files
}

/// The file `peapod login` writes.
pub fn write_target(auth_file: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(f) = auth_file {
        return Ok(f.to_owned());
    }
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        return Ok(f.into());
    }
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(run).join("containers/auth.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/containers/auth.json"))
        .ok_or_else(|| "no credentials file: set REGISTRY_AUTH_FILE or pass --authfile".to_owned())
}

/// The keys a file may hold `registry` under.
fn keys(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == "docker.io" {
        keys.extend(
            [
                "index.docker.io",
                "registry-1.docker.io",
                "https://index.docker.io/v1/",
            ]
            .map(String::from),
        );
    }
    keys
}

/// Read a credentials file; `None` if it is not there.
fn read(file: &Path) -> Result<Option<Value>, String> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            format!(
                "the credentials file {} is not valid JSON: {e}",
                file.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read the credentials file {}: {e}",
            file.display()
        )),
    }
}

/// `USER:PASSWORD` out of an `auth` value.
fn decode(auth: &str, file: &Path, registry: &str) -> Result<(String, String), String> {
    let bad = || {
        format!(
            "the entry for {registry} in {} is not base64 of USER:PASSWORD; log in again with \
             `peapod login {registry}`",
            file.display()
        )
    };
    let bytes = peapod_proto::bytes::decode(auth.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_owned(), password.to_owned()))
}

/// The credentials for `registry`.
pub fn lookup(registry: &str, auth_file: Option<&Path>) -> Result<Credentials, String> {
    let tried = read_order(auth_file);
    for file in &tried {
        let Some(doc) = read(file)? else {
            continue;
        };
        let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
            continue;
        };
        for key in keys(registry) {
            let Some(entry) = auths.get(&key) else {
                continue;
            };
            if let Some(auth) = entry
                .get("auth")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                let (user, password) = decode(auth, file, registry)?;
                return Ok(Credentials {
                    auth: RegistryAuth::Basic(user, password),
                    source: Some(file.clone()),
                    tried,
                });
            }
        }
    }
    Ok(Credentials {
        auth: RegistryAuth::Anonymous,
        source: None,
        tried,
    })
}

/// Write `file` (mode 0600) atomically, its directory made (0700).
fn write(file: &Path, doc: &Value) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.peapod-{}",
        file.file_name()
            .map_or("auth".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let text = serde_json::to_vec_pretty(doc).expect("JSON serialises");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, file));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write the credentials file {}: {e}", file.display())
    })
}

/// Store `user`:`password` for `registry` in `file`, keeping the rest.
pub fn store(file: &Path, registry: &str, user: &str, password: &str) -> Result<(), String> {
    let mut doc = read(file)?.unwrap_or_else(|| Value::Object(Map::new()));
    let Some(top) = doc.as_object_mut() else {
        return Err(format!(
            "the credentials file {} is not a JSON object",
            file.display()
        ));
    };
    let auths = top
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(format!(
            "\"auths\" in {} is not a JSON object",
            file.display()
        ));
    };
    let encoded = peapod_proto::bytes::encode(format!("{user}:{password}").as_bytes());
    auths.insert(registry.to_owned(), serde_json::json!({ "auth": encoded }));
    write(file, &doc)
}

/// Remove `registry`'s credentials from `file`; whether there were any.
pub fn remove(file: &Path, registry: &str) -> Result<bool, String> {
    let Some(mut doc) = read(file)? else {
        return Ok(false);
    };
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let mut removed = false;
    for key in keys(registry) {
        removed |= auths.remove(&key).is_some();
    }
    if removed {
        write(file, &doc)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("peapod-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn test_store_lookup_remove_keep_other_entries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("roundtrip");
        let file = dir.join("sub/auth.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            r#"{"auths": {"ghcr.io": {"auth": "dTpw"}}, "credHelpers": {"x": "y"}}"#,
        )
        .unwrap();
        store(&file, "localhost:5000", "alice", "s3:cret").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let got = lookup("localhost:5000", Some(&file)).unwrap();
        assert!(matches!(&got.auth, RegistryAuth::Basic(u, p) if u == "alice" && p == "s3:cret"));
        assert_eq!(got.source.as_deref(), Some(file.as_path()));
        // The other entries stay.
        let ghcr = lookup("ghcr.io", Some(&file)).unwrap();
        assert!(matches!(&ghcr.auth, RegistryAuth::Basic(u, p) if u == "u" && p == "p"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("credHelpers"), "{text}");
        assert!(remove(&file, "localhost:5000").unwrap());
        assert!(!remove(&file, "localhost:5000").unwrap());
        let gone = lookup("localhost:5000", Some(&file)).unwrap();
        assert!(matches!(gone.auth, RegistryAuth::Anonymous));
        assert!(gone.describe().contains(&file.display().to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_docker_hub_keys_and_bad_entries() {
        let dir = scratch("keys");
        let file = dir.join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}}}"#,
        )
        .unwrap();
        let hub = lookup("docker.io", Some(&file)).unwrap();
        assert!(matches!(hub.auth, RegistryAuth::Basic(..)));
        std::fs::write(&file, r#"{"auths": {"r.example": {"auth": "!!"}}}"#).unwrap();
        let err = lookup("r.example", Some(&file)).unwrap_err();
        assert!(
            err.contains("not base64") && err.contains("peapod login r.example"),
            "{err}"
        );
        std::fs::write(&file, "{").unwrap();
        assert!(lookup("r.example", Some(&file))
            .unwrap_err()
            .contains("not valid JSON"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
