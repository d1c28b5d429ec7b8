//! Image references: where a container's root filesystem comes from.
//!
//! Two families are accepted:
//!
//! - a local source, with the skopeo/podman transport syntax:
//!   `oci:DIR[:TAG]` (an OCI image layout directory), `oci-archive:FILE[:TAG]`
//!   (a tar of one), `docker-archive:FILE` (`docker save` output) and
//!   `rootfs:DIR` (an unpacked root filesystem, peapod's own). As in skopeo,
//!   the path ends at the first `:`. Relative paths are kept relative here
//!   and resolved later against the pod file's directory
//!   ([`ImageRef::resolve_relative`]);
//! - a Docker-style name (`busybox`, `library/busybox:1.36`,
//!   `registry.example.com:5000/ns/img:tag`, `img@sha256:<64 hex>`),
//!   normalised as Docker does: the registry defaults to `docker.io`, a
//!   one-part name on Docker Hub gets `library/`, and the tag defaults to
//!   `latest` unless a digest pins the image.
//!
//! Registry names are pulled by [`super::registry`] (written without a
//! `docker://` transport, as Kubernetes writes them).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The accepted forms, appended to every error message.
const FORMS: &str = "accepted forms: NAME[:TAG] or NAME@sha256:DIGEST \
    (e.g. busybox, busybox:1.36, registry.example.com:5000/ns/img:tag), \
    oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, rootfs:DIR";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    OciLayout {
        /// The layout directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick; `None` means the
        /// index's only image.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a tar archive of an OCI image layout.
    OciArchive {
        /// The archive.
        path: PathBuf,
        /// As for [`ImageRef::OciLayout`].
        tag: Option<String>,
    },
    /// `docker-archive:FILE`: a `docker save` tar archive with one image.
    DockerArchive {
        /// The archive.
        path: PathBuf,
    },
    /// `rootfs:DIR`: an already unpacked root filesystem.
    Rootfs {
        /// The root directory.
        path: PathBuf,
    },
    /// A registry image name, normalised (`docker.io/library/busybox`).
    Named {
        /// Registry and repository, e.g. `docker.io/library/busybox`.
        name: String,
        /// The tag; `latest` when neither a tag nor a digest was given.
        tag: Option<String>,
        /// A content digest, `sha256:<64 hex>` or `sha512:<128 hex>`.
        digest: Option<String>,
    },
}

/// Why a text is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// The reference is empty.
    #[error("image reference is empty; {FORMS}")]
    Empty,
    /// The reference has whitespace where none may be.
    #[error("image reference {input:?} contains whitespace; remove it ({FORMS})")]
    Whitespace {
        /// The rejected text.
        input: String,
    },
    /// The reference names a transport peapod does not implement.
    #[error(
        "image reference {input:?} uses the {transport} transport, which peapod does not \
         support{note}; supported transports are oci:, oci-archive:, docker-archive: and \
         rootfs: ({FORMS})"
    )]
    UnsupportedTransport {
        /// The rejected text.
        input: String,
        /// The transport as written, e.g. `docker://`.
        transport: String,
        /// Extra advice for well-known transports, with its leading `; `.
        note: String,
    },
    /// A transport without its path (`oci:`).
    #[error("image reference {input:?}: the {transport} transport needs a path, e.g. {example}")]
    EmptyPath {
        /// The rejected text.
        input: String,
        /// The transport, e.g. `oci:`.
        transport: &'static str,
        /// A valid example of that transport.
        example: &'static str,
    },
    /// Anything else: the message says what is wrong.
    #[error("image reference {input:?}: {problem}; {FORMS}")]
    Invalid {
        /// The rejected text.
        input: String,
        /// What is wrong.
        problem: String,
    },
}

/// containers/image transports that peapod recognises but does not
/// implement, with advice.
const UNSUPPORTED_TRANSPORTS: &[(&str, &str)] = &[
    ("containers-storage", "; export the image first, e.g. `podman save --format oci-archive -o img.tar IMAGE`, then use oci-archive:img.tar"),
    ("docker-daemon", "; export the image first, e.g. `docker save -o img.tar IMAGE`, then use docker-archive:img.tar"),
    ("dir", "; copy it to an OCI layout first, e.g. `skopeo copy dir:DIR oci:DIR2:latest`"),
    ("ostree", ""),
    ("sif", ""),
    ("tarball", ""),
];

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(input: &str) -> Result<Self, ImageRefError> {
        if input.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if input.trim() != input {
            return Err(ImageRefError::Whitespace {
                input: input.to_owned(),
            });
        }
        if input.chars().any(|c| c.is_whitespace() && c != ' ') {
            return Err(ImageRefError::Whitespace {
                input: input.to_owned(),
            });
        }
        if input.chars().any(char::is_control) {
            return Err(invalid(input, "it contains control characters"));
        }
        if let Some(scheme_end) = input.find("://") {
            let scheme = &input[..scheme_end];
            let note = if scheme == "docker" {
                "; a registry image is named without it, as Kubernetes names it: write \
                 busybox:latest (peapod pulls it)"
            } else {
                ""
            };
            return Err(ImageRefError::UnsupportedTransport {
                input: input.to_owned(),
                transport: format!("{scheme}://"),
                note: note.to_owned(),
            });
        }
        if let Some((prefix, rest)) = input.split_once(':') {
            match prefix {
                "oci" => {
                    let (path, tag) = split_path_tag(input, rest, "oci:", "oci:./images/app:v1")?;
                    return Ok(ImageRef::OciLayout { path, tag });
                }
                "oci-archive" => {
                    let (path, tag) =
                        split_path_tag(input, rest, "oci-archive:", "oci-archive:./app.tar:v1")?;
                    return Ok(ImageRef::OciArchive { path, tag });
                }
                "docker-archive" => {
                    let path =
                        check_path(input, rest, "docker-archive:", "docker-archive:./app.tar")?;
                    if rest.contains(':') {
                        return Err(invalid(
                            input,
                            "docker-archive: takes a file only, without a tag or image name; \
                             peapod loads the archive's only image",
                        ));
                    }
                    return Ok(ImageRef::DockerArchive { path });
                }
                "rootfs" => {
                    let path = check_path(input, rest, "rootfs:", "rootfs:./rootfs")?;
                    return Ok(ImageRef::Rootfs { path });
                }
                _ => {}
            }
            if let Some((transport, note)) = UNSUPPORTED_TRANSPORTS
                .iter()
                .find(|(name, _)| *name == prefix)
            {
                return Err(ImageRefError::UnsupportedTransport {
                    input: input.to_owned(),
                    transport: format!("{transport}:"),
                    note: (*note).to_owned(),
                });
            }
        }
        super::name::parse_named(input)
    }
}

pub(super) fn invalid(input: &str, problem: impl Into<String>) -> ImageRefError {
    ImageRefError::Invalid {
        input: input.to_owned(),
        problem: problem.into(),
    }
}

/// Checks the path part of a transport reference.
fn check_path(
    input: &str,
    path: &str,
    transport: &'static str,
    example: &'static str,
) -> Result<PathBuf, ImageRefError> {
    if path.is_empty() {
        return Err(ImageRefError::EmptyPath {
            input: input.to_owned(),
            transport,
            example,
        });
    }
    Ok(PathBuf::from(path))
}

/// Splits `PATH[:TAG]` at the first `:`, as skopeo does.
fn split_path_tag(
    input: &str,
    rest: &str,
    transport: &'static str,
    example: &'static str,
) -> Result<(PathBuf, Option<String>), ImageRefError> {
    let (path, tag) = match rest.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (rest, None),
    };
    let path = check_path(input, path, transport, example)?;
    if let Some(tag) = tag {
        check_oci_ref_name(input, tag)?;
    }
    Ok((path, tag.map(str::to_owned)))
}

/// Checks an OCI `org.opencontainers.image.ref.name`: components of ASCII
/// letters and digits joined by one of `-._:@+/` (or `--`).
fn check_oci_ref_name(input: &str, tag: &str) -> Result<(), ImageRefError> {
    if tag.is_empty() {
        return Err(invalid(
            input,
            "the tag after the path is empty; remove the trailing ':' or write a tag, e.g. oci:DIR:latest",
        ));
    }
    let is_separator = |c: char| "-._:@+/".contains(c);
    let chars_ok = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || is_separator(c));
    let ends_ok = tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !chars_ok || !ends_ok {
        return Err(invalid(
            input,
            format!(
                "tag {tag:?} is not valid: use letters, digits and - . _ : @ + /, \
                 starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    /// Writes the reference so that parsing it gives the same value back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::OciLayout { path, tag } | ImageRef::OciArchive { path, tag } => {
                let transport = match self {
                    ImageRef::OciLayout { .. } => "oci",
                    _ => "oci-archive",
                };
                write!(f, "{transport}:{}", path.display())?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                Ok(())
            }
            ImageRef::DockerArchive { path } => write!(f, "docker-archive:{}", path.display()),
            ImageRef::Rootfs { path } => write!(f, "rootfs:{}", path.display()),
            ImageRef::Named { name, tag, digest } => {
                f.write_str(name)?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                if let Some(digest) = digest {
                    write!(f, "@{digest}")?;
                }
                Ok(())
            }
        }
    }
}

impl ImageRef {
    /// Makes a relative transport path relative to `base` (normally the pod
    /// file's directory). Absolute paths and registry names are unchanged.
    pub fn resolve_relative(&mut self, base: &Path) {
        match self {
            ImageRef::OciLayout { path, .. }
            | ImageRef::OciArchive { path, .. }
            | ImageRef::DockerArchive { path }
            | ImageRef::Rootfs { path } => {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
            ImageRef::Named { .. } => {}
        }
    }

    /// The name the local store records a registry image under: the
    /// normalised `name:tag` (`latest` when none), or `name@digest` for a
    /// pinned one; `None` for a path reference.
    pub fn store_key(&self) -> Option<String> {
        match self {
            ImageRef::Named {
                name,
                digest: Some(d),
                ..
            } => Some(format!("{name}@{d}")),
            ImageRef::Named { name, tag, .. } => {
                Some(format!("{name}:{}", tag.as_deref().unwrap_or("latest")))
            }
            _ => None,
        }
    }

    /// The local path the image is read from, `None` for registry names.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ImageRef::OciLayout { path, .. }
            | ImageRef::OciArchive { path, .. }
            | ImageRef::DockerArchive { path }
            | ImageRef::Rootfs { path } => Some(path),
            ImageRef::Named { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn named(name: &str, tag: Option<&str>, digest: Option<&str>) -> ImageRef {
        ImageRef::Named {
            name: name.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        }
    }

    fn parse(input: &str) -> ImageRef {
        input
            .parse()
            .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn parse_err(input: &str) -> String {
        match input.parse::<ImageRef>() {
            Ok(v) => panic!("{input:?} should be rejected, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn test_image_ref_named_table() {
        let with_digest = format!("busybox@{SHA}");
        let with_tag_and_digest = format!("registry.example.com:5000/ns/img:v2@{SHA}");
        let cases: Vec<(&str, ImageRef)> = vec![
            (
                "busybox",
                named("docker.io/library/busybox", Some("latest"), None),
            ),
            (
                "busybox:latest",
                named("docker.io/library/busybox", Some("latest"), None),
            ),
            (
                "busybox:1.36",
                named("docker.io/library/busybox", Some("1.36"), None),
            ),
            (
                "library/busybox:1.36",
                named("docker.io/library/busybox", Some("1.36"), None),
            ),
            (
                "docker.io/library/busybox",
                named("docker.io/library/busybox", Some("latest"), None),
            ),
            (
                "docker.io/busybox",
                named("docker.io/library/busybox", Some("latest"), None),
            ),
            (
                "index.docker.io/busybox",
                named("docker.io/library/busybox", Some("latest"), None),
            ),
            ("user/app:v1", named("docker.io/user/app", Some("v1"), None)),
            (
                "registry.example.com:5000/ns/img:tag",
                named("registry.example.com:5000/ns/img", Some("tag"), None),
            ),
            (
                "registry.example.com/a/b/c",
                named("registry.example.com/a/b/c", Some("latest"), None),
            ),
            (
                "localhost/app",
                named("localhost/app", Some("latest"), None),
            ),
            (
                "localhost:5000/app:dev",
                named("localhost:5000/app", Some("dev"), None),
            ),
            (
                "[::1]:5000/app",
                named("[::1]:5000/app", Some("latest"), None),
            ),
            (
                "Registry.Example.com/app",
                named("Registry.Example.com/app", Some("latest"), None),
            ),
            (
                "quay.io/my_org/my-app__x.y:V1_2.3-rc",
                named("quay.io/my_org/my-app__x.y", Some("V1_2.3-rc"), None),
            ),
            (
                "a--b",
                named("docker.io/library/a--b", Some("latest"), None),
            ),
            (
                "docker:latest",
                named("docker.io/library/docker", Some("latest"), None),
            ),
            ("foo:bar", named("docker.io/library/foo", Some("bar"), None)),
            (
                &with_digest,
                named("docker.io/library/busybox", None, Some(SHA)),
            ),
            (
                &with_tag_and_digest,
                named("registry.example.com:5000/ns/img", Some("v2"), Some(SHA)),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "parse({input:?})");
        }
    }

    #[test]
    fn test_image_ref_transport_table() {
        let cases: Vec<(&str, ImageRef)> = vec![
            (
                "oci:/var/images/app",
                ImageRef::OciLayout {
                    path: "/var/images/app".into(),
                    tag: None,
                },
            ),
            (
                "oci:./images/app:v1",
                ImageRef::OciLayout {
                    path: "./images/app".into(),
                    tag: Some("v1".into()),
                },
            ),
            (
                "oci:app:registry.example.com/app:1.0",
                ImageRef::OciLayout {
                    path: "app".into(),
                    tag: Some("registry.example.com/app:1.0".into()),
                },
            ),
            (
                "oci-archive:app.tar",
                ImageRef::OciArchive {
                    path: "app.tar".into(),
                    tag: None,
                },
            ),
            (
                "oci-archive:/tmp/app.tar:latest",
                ImageRef::OciArchive {
                    path: "/tmp/app.tar".into(),
                    tag: Some("latest".into()),
                },
            ),
            (
                "docker-archive:images/busybox.tar",
                ImageRef::DockerArchive {
                    path: "images/busybox.tar".into(),
                },
            ),
            (
                "rootfs:/srv/rootfs",
                ImageRef::Rootfs {
                    path: "/srv/rootfs".into(),
                },
            ),
            (
                "rootfs:my rootfs",
                ImageRef::Rootfs {
                    path: "my rootfs".into(),
                },
            ),
            ("rootfs:a:b", ImageRef::Rootfs { path: "a:b".into() }),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "parse({input:?})");
        }
    }

    #[test]
    fn test_image_ref_display_round_trips() {
        let digest = format!("img@{SHA}");
        let both = format!("registry.example.com:5000/ns/img:v2@{SHA}");
        let inputs = [
            "busybox",
            "busybox:1.36",
            "library/busybox:1.36",
            "registry.example.com:5000/ns/img:tag",
            "localhost/app",
            digest.as_str(),
            both.as_str(),
            "oci:/var/images/app",
            "oci:./images/app:v1",
            "oci-archive:app.tar:latest",
            "docker-archive:busybox.tar",
            "rootfs:/srv/rootfs",
        ];
        for input in inputs {
            let parsed = parse(input);
            let shown = parsed.to_string();
            assert_eq!(
                parse(&shown),
                parsed,
                "round trip of {input:?} via {shown:?}"
            );
        }
        assert_eq!(
            parse("busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            parse("oci:./images/app:v1").to_string(),
            "oci:./images/app:v1"
        );
    }

    #[test]
    fn test_image_ref_rejects_table() {
        let long_name = "a".repeat(260);
        let long_tag = format!("busybox:{}", "t".repeat(129));
        let cases: Vec<(&str, &str)> = vec![
            ("", "empty"),
            (" busybox", "whitespace"),
            ("busybox ", "whitespace"),
            ("busy box", "whitespace"),
            ("busybox:1 .36", "whitespace"),
            ("busy\tbox", "whitespace"),
            ("Busybox", "must be lowercase"),
            (
                "library/BusyBox:1",
                "must be lowercase (try \"library/busybox\")",
            ),
            ("registry.example.com/Ns/img", "must be lowercase"),
            ("busybox:", "tag after ':' is empty"),
            ("busybox:v1!", "tag \"v1!\" is not valid"),
            ("busybox:.hidden", "tag \".hidden\" is not valid"),
            ("busybox:-x", "is not valid"),
            (long_tag.as_str(), "is not valid"),
            ("busybox@sha256:abc", "exactly 64 lowercase hex"),
            (
                "busybox@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                "lowercase hex",
            ),
            (
                "busybox@md5:0123456789abcdef0123456789abcdef",
                "sha256: followed by 64",
            ),
            ("busybox@", "is not valid"),
            ("busybox@@x", "is not valid"),
            ("-busybox", "repository name"),
            ("busybox-", "repository name"),
            ("a..b", "repository name"),
            ("a___b", "repository name"),
            ("a//b", "repository name"),
            ("ns/", "repository name"),
            (":tag", "image name is missing"),
            ("registry.example.com:port/app", "registry"),
            ("bad_host.example.com/app", "registry"),
            ("[::1/app", "registry"),
            (long_name.as_str(), "longer than 255"),
            ("oci:", "oci: transport needs a path"),
            ("oci::v1", "oci: transport needs a path"),
            ("oci-archive:", "oci-archive: transport needs a path"),
            ("docker-archive:", "docker-archive: transport needs a path"),
            ("rootfs:", "rootfs: transport needs a path"),
            ("oci:dir:", "tag after the path is empty"),
            ("oci:dir:bad tag", "is not valid"),
            ("oci:dir:-x", "is not valid"),
            ("docker-archive:a.tar:busybox:latest", "takes a file only"),
            ("docker://busybox", "docker:// transport"),
            ("docker://busybox", "named without it"),
            ("http://example.com/x", "http:// transport"),
            (
                "containers-storage:busybox",
                "containers-storage: transport",
            ),
            ("docker-daemon:busybox:latest", "docker save"),
            ("dir:/tmp/x", "dir: transport"),
            ("sif:/tmp/x.sif", "sif: transport"),
            ("busy\u{7}box", "control characters"),
        ];
        for (input, want) in cases {
            let message = parse_err(input);
            assert!(
                message.contains(want),
                "{input:?}: {message:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn test_image_ref_errors_show_accepted_forms() {
        for input in ["Busybox", "docker://busybox", "busybox:", ""] {
            let message = parse_err(input);
            assert!(message.contains("oci:DIR[:TAG]"), "{message}");
            assert!(message.contains("NAME[:TAG]"), "{message}");
        }
        assert!(parse_err("docker://busybox").contains("supported transports are oci:"));
    }

    #[test]
    fn test_image_ref_store_key() {
        assert_eq!(
            parse("nginx").store_key().unwrap(),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            parse(&format!("ghcr.io/o/a:1@{SHA}")).store_key().unwrap(),
            format!("ghcr.io/o/a@{SHA}")
        );
        assert_eq!(parse("oci:./x").store_key(), None);
    }

    #[test]
    fn test_image_ref_resolve_relative() {
        let base = Path::new("/srv/pods");
        let cases = [
            ("oci:images/app:v1", "oci:/srv/pods/images/app:v1"),
            ("oci:./app", "oci:/srv/pods/./app"),
            ("oci:/abs/app", "oci:/abs/app"),
            ("oci-archive:app.tar", "oci-archive:/srv/pods/app.tar"),
            ("docker-archive:app.tar", "docker-archive:/srv/pods/app.tar"),
            ("rootfs:root", "rootfs:/srv/pods/root"),
            ("busybox", "docker.io/library/busybox:latest"),
        ];
        for (input, want) in cases {
            let mut image = parse(input);
            image.resolve_relative(base);
            assert_eq!(image.to_string(), want, "resolve {input:?}");
        }
    }

    #[test]
    fn test_image_ref_path() {
        assert_eq!(parse("oci:/a:b").path(), Some(Path::new("/a")));
        assert_eq!(parse("busybox").path(), None);
    }
}
