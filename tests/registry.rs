//! Registry pulls against a real registry on loopback: Debian's
//! `docker-registry` (the CNCF distribution registry), started by each test
//! with a throwaway config and storage and filled with `skopeo copy` from
//! the busybox test image. Pods run natively (`--isolation=namespace`), so
//! the tests need root.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{init_binary, is_root, peapod, test_image, Run, TempDir};

fn skip() -> bool {
    if !is_root() {
        common::skip("pods run with --isolation=namespace, which needs root");
        return true;
    }
    false
}

/// A peapod environment: a private cache, runtime and data directory, and
/// HOME (where credentials files are looked for).
struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = TempDir::new("registry-cli");
        for d in ["run", "home"] {
            std::fs::create_dir_all(dir.0.join(d)).unwrap();
        }
        Env { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(peapod());
        cmd.args(args)
            .current_dir(&self.dir.0)
            .env("PEAPOD_CACHE", self.dir.0.join("cache"))
            .env("XDG_RUNTIME_DIR", self.dir.0.join("run"))
            .env("PEAPOD_DATA", self.dir.0.join("data"))
            .env("HOME", self.dir.0.join("home"))
            .env("PEAPOD_INIT", init_binary())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn peapod(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run peapod").into()
    }

    /// Run a one-container pod of `image` that prints `hello`.
    fn run_hello(&self, image: &str, policy: &str) -> Run {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: hello}}\nspec:\n  restartPolicy: Never\n  \
             containers:\n  - name: c\n    image: {image}\n{policy}    command: [sh, -c, 'echo hello']\n"
        );
        self.dir.write("hello.yaml", &yaml);
        self.peapod(&["run", "--isolation=namespace", "hello.yaml"])
    }

    fn store(&self) -> PathBuf {
        self.dir.0.join("cache/images")
    }

    /// Files under the store's `dir`.
    fn count(&self, dir: &str) -> usize {
        std::fs::read_dir(self.store().join(dir)).map_or(0, |d| d.count())
    }
}

/// How a test registry is set up.
#[derive(Default)]
struct Setup {
    /// htpasswd user and password.
    user: Option<(&'static str, &'static str)>,
    /// Serve TLS with a certificate of a CA the test makes (its `ca.crt`
    /// in `certs/`).
    tls: bool,
}

/// A registry on 127.0.0.1, stopped on drop.
struct Registry {
    child: Child,
    dir: TempDir,
    /// `127.0.0.1:PORT`.
    addr: String,
}

impl Registry {
    fn start(setup: Setup) -> Registry {
        let dir = TempDir::new("registry");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: {addr}\n",
            dir.0.join("storage").display()
        );
        if setup.tls {
            make_certs(&dir.0.join("certs"));
            config.push_str(&format!(
                "  tls: {{certificate: {0}/server.crt, key: {0}/server.key}}\n",
                dir.0.join("certs").display()
            ));
        }
        if let Some((user, password)) = setup.user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            std::fs::write(dir.0.join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: peapod-test, path: {}}}\n",
                dir.0.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.0.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.0.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.0.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (Debian's docker-registry package)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, dir, addr }
    }

    /// `skopeo copy` `src` to `name` (`busybox:latest`) in this registry.
    fn push(&self, src: &str, name: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if self.dir.0.join("htpasswd").exists() {
            cmd.args(["--dest-creds", "peapod:s3cret"]);
        }
        let out = cmd
            .args(extra)
            .arg(src)
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {src}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The file holding blob `digest` in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .0
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, and a certificate it signed for 127.0.0.1, in `dir`.
fn make_certs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=peapod test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

fn docker_archive() -> String {
    format!(
        "docker-archive:{}",
        test_image().join("busybox.tar").display()
    )
}

/// The last line of a successful `peapod pull`: the digest.
fn pulled(run: &Run) -> String {
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout.trim().to_owned()
}

#[test]
fn test_registry_pull_by_tag_and_digest_run_and_policies() {
    if skip() {
        return;
    }
    let reg = Registry::start(Setup::default());
    reg.push(&docker_archive(), "busybox:latest", &[]);
    reg.push(&docker_archive(), "tools/busybox:1.0", &[]);
    let env = Env::new();
    // A pod naming a registry image runs after nothing but `peapod run`.
    let image = format!(
        "{}/busybox:latest",
        reg.addr.replace("127.0.0.1", "localhost")
    );
    let run = env.run_hello(&image, "");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "[c] hello\n", "{run:?}");
    assert!(run.stderr.contains(&format!("pulling {image}")), "{run:?}");
    assert!(run.stderr.contains("plain HTTP"), "said aloud: {run:?}");
    // By tag, then again: nothing is fetched the second time.
    let tagged = format!("{}/tools/busybox:1.0", reg.addr);
    let first = env.peapod(&["pull", &tagged]);
    let digest = pulled(&first);
    assert!(digest.starts_with("sha256:"), "{first:?}");
    let again = env.peapod(&["pull", &tagged]);
    assert_eq!(pulled(&again), digest);
    assert!(again.stderr.contains("fetched 0 of"), "{again:?}");
    // By digest.
    let pinned = format!("{}/tools/busybox@{digest}", reg.addr);
    assert_eq!(pulled(&env.peapod(&["pull", &pinned])), digest);
    let ls = env.peapod(&["image", "ls"]);
    assert!(
        ls.stdout
            .contains(&format!("{}/tools/busybox:1.0", reg.addr)),
        "{ls:?}"
    );
    assert!(ls.stdout.contains("ago"), "{ls:?}");
    // IfNotPresent runs the stored copy; Never refuses one not there.
    let run = env.run_hello(&tagged, "    imagePullPolicy: IfNotPresent\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "[c] hello\n"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("pulling"), "{run:?}");
    let missing = format!("{}/tools/busybox:2.0", reg.addr);
    let run = env.run_hello(&missing, "    imagePullPolicy: Never\n");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("spec.containers[0].image")
            && run.stderr.contains("imagePullPolicy is Never"),
        "{run:?}"
    );
    // Not in the registry: the tag is named.
    let run = env.peapod(&["pull", &missing]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("no tag \"2.0\" of \"tools/busybox\"; its tags: 1.0"),
        "{run:?}"
    );
    let run = env.peapod(&["pull", &format!("{}/nothing/here:1", reg.addr)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no repository"), "{run:?}");
    // An image loaded from an archive runs with an explicit Always even
    // when its registry cannot give it (here: no network, or no such
    // image), with a warning.
    let load = env.peapod(&[
        "image",
        "load",
        test_image().join("busybox.tar").to_str().unwrap(),
    ]);
    assert_eq!(load.code, 0, "{load:?}");
    let run = env.run_hello("busybox:latest", "    imagePullPolicy: Always\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "[c] hello\n"),
        "{run:?}"
    );
    let rm = env.peapod(&["image", "rm", "busybox:latest"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    // rm forgets names; prune then frees what no name uses.
    for name in [&tagged, &pinned, &image] {
        let rm = env.peapod(&["image", "rm", name]);
        assert_eq!(rm.code, 0, "{rm:?}");
    }
    let prune = env.peapod(&["image", "prune"]);
    assert_eq!(prune.code, 0, "{prune:?}");
    assert_eq!(env.count("blobs/sha256"), 0, "{prune:?}");
    assert_eq!(env.count("rootfs/sha256"), 0, "{prune:?}");
}

/// An OCI layout at `dir` whose `multi` tag is an index of the busybox
/// image (linux/amd64) and a tiny linux/arm64 image that cannot run here.
fn multi_platform_layout(dir: &Path) -> String {
    use sha2::{Digest as _, Sha256};
    let src = test_image().join("oci");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let amd64 = index["manifests"][0].clone();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "arm64", &b"arm\n"[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": "arm64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {"Cmd": ["/arm64"]}
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    });
    let (arm_digest, arm_size) = put(manifest.to_string().as_bytes());
    let image_index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_digest, "size": arm_size,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64["digest"], "size": amd64["size"],
             "platform": {"architecture": "amd64", "os": "linux"}}
        ]
    });
    let (index_digest, index_size) = put(image_index.to_string().as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
                       "size": index_size, "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
    });
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    amd64["digest"].as_str().unwrap().to_owned()
}

#[test]
fn test_registry_multi_platform_index_and_zstd_and_gzip_layers() {
    if skip() {
        return;
    }
    let reg = Registry::start(Setup::default());
    let scratch = TempDir::new("multi-layout");
    let layout = scratch.0.join("oci");
    let amd64 = multi_platform_layout(&layout);
    reg.push(
        &format!("oci:{}:multi", layout.display()),
        "multi:latest",
        &["--all"],
    );
    reg.push(
        &docker_archive(),
        "zstd:latest",
        &["--dest-compress-format", "zstd", "--dest-compress"],
    );
    reg.push(
        &docker_archive(),
        "gzip:latest",
        &["--dest-compress-format", "gzip", "--dest-compress"],
    );
    let env = Env::new();
    // The index names both platforms; linux/amd64 is the one pulled (the
    // arm64 image has no shell: a pod of it would fail).
    let multi = format!("{}/multi:latest", reg.addr);
    let pull = env.peapod(&["pull", &multi]);
    assert!(pull.stderr.contains(&format!("image {amd64}")), "{pull:?}");
    let run = env.run_hello(&multi, "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "[c] hello\n"),
        "{run:?}"
    );
    for name in ["zstd", "gzip"] {
        let image = format!("{}/{name}:latest", reg.addr);
        let run = env.run_hello(&image, "");
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, "[c] hello\n"),
            "{name}: {run:?}"
        );
    }
}

#[test]
fn test_registry_basic_auth_login_and_docker_config() {
    if skip() {
        return;
    }
    let reg = Registry::start(Setup {
        user: Some(("peapod", "s3cret")),
        ..Setup::default()
    });
    reg.push(&docker_archive(), "private/busybox:latest", &[]);
    let env = Env::new();
    let image = format!("{}/private/busybox:latest", reg.addr);
    // Refused without credentials, naming where they were looked for.
    let run = env.peapod(&["pull", &image]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("refused access")
            && run.stderr.contains(".docker/config.json")
            && run.stderr.contains(&format!("peapod login {}", reg.addr)),
        "{run:?}"
    );
    // A wrong password is refused by `login`, which stores nothing.
    let mut bad = env.command(&["login", &reg.addr, "-u", "peapod", "-p", "wrong"]);
    let bad: Run = bad.output().unwrap().into();
    assert_eq!(bad.code, 2, "{bad:?}");
    let auth_file = env.dir.0.join("run/containers/auth.json");
    assert!(!auth_file.exists());
    // `peapod login` (password on stdin), then the pull works.
    let mut login = env.command(&["login", &reg.addr, "-u", "peapod", "--password-stdin"]);
    login
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    }
    let login: Run = child.wait_with_output().unwrap().into();
    assert_eq!(login.code, 0, "{login:?}");
    assert!(auth_file.exists(), "{login:?}");
    assert_eq!(pulled(&env.peapod(&["pull", &image])).len(), 71);
    let logout = env.peapod(&["logout", &reg.addr]);
    assert_eq!(logout.code, 0, "{logout:?}");
    assert_eq!(env.peapod(&["pull", &image]).code, 2);
    // A docker config.json written by hand does as well.
    let docker = env.dir.0.join("home/.docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "cGVhcG9kOnMzY3JldA=="}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let run = env.run_hello(&image, "    imagePullPolicy: Always\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "[c] hello\n"),
        "{run:?}"
    );
}

#[test]
fn test_registry_tls_with_the_registrys_ca() {
    if skip() {
        return;
    }
    let reg = Registry::start(Setup {
        tls: true,
        ..Setup::default()
    });
    let certs = reg.dir.0.join("certs");
    reg.push(&docker_archive(), "busybox:latest", &[]);
    let env = Env::new();
    let image = format!("{}/busybox:latest", reg.addr);
    // Not trusted without its CA (and not silently downgraded to HTTP).
    let run = env.peapod(&["pull", &image]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("certificate is not trusted"), "{run:?}");
    assert!(run.stderr.contains("certs.d"), "{run:?}");
    // With it, by --cert-dir and by the registry's certs.d directory.
    let ca_only = env.dir.0.join("ca");
    std::fs::create_dir_all(&ca_only).unwrap();
    std::fs::copy(certs.join("ca.crt"), ca_only.join("ca.crt")).unwrap();
    let run = env.peapod(&["pull", "--cert-dir", ca_only.to_str().unwrap(), &image]);
    assert_eq!(run.code, 0, "{run:?}");
    let certs_d = env
        .dir
        .0
        .join("home/.config/containers/certs.d")
        .join(&reg.addr);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(certs.join("ca.crt"), certs_d.join("ca.crt")).unwrap();
    let run = env.run_hello(&image, "    imagePullPolicy: Always\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "[c] hello\n"),
        "{run:?}"
    );
}

#[test]
fn test_registry_corrupt_blob_leaves_nothing_and_concurrent_pulls() {
    if skip() {
        return;
    }
    let reg = Registry::start(Setup::default());
    reg.push(&docker_archive(), "busybox:latest", &[]);
    reg.push(
        &docker_archive(),
        "broken:latest",
        &["--dest-compress-format", "gzip", "--dest-compress"],
    );
    let env = Env::new();
    // Two pulls of one image at once: both succeed, the store is whole.
    let image = format!("{}/busybox:latest", reg.addr);
    let a = env
        .command(&["pull", "-q", &image])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = env
        .command(&["pull", "-q", &image])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b): (Run, Run) = (
        a.wait_with_output().unwrap().into(),
        b.wait_with_output().unwrap().into(),
    );
    assert_eq!(pulled(&a), pulled(&b));
    let run = env.run_hello(&image, "    imagePullPolicy: Never\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "[c] hello\n"),
        "{run:?}"
    );
    // A layer whose bytes changed in the registry: refused by digest,
    // nothing of it kept.
    let other = Env::new();
    let manifest = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/broken:latest", reg.addr))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let broken = format!("{}/broken:latest", reg.addr);
    let run = other.peapod(&["pull", &broken]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&layer) && run.stderr.contains("does not match"),
        "{run:?}"
    );
    let hex = layer.trim_start_matches("sha256:");
    assert!(!other.store().join("blobs/sha256").join(hex).exists());
    assert_eq!(other.count("tmp"), 0, "nothing half-written");
    assert_eq!(other.count("rootfs/sha256"), 0);
    let ls = other.peapod(&["image", "ls"]);
    assert!(!ls.stdout.contains("broken"), "{ls:?}");
}
