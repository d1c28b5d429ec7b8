//! Pulling images from registries (the OCI distribution API, through
//! oci-client) into the content-addressed store.
//!
//! A pull fetches the manifest the reference names (an index: then its
//! linux/amd64 image's manifest), then the config and every layer the
//! store does not have yet, each streamed into `tmp/` while it is hashed
//! and published under its digest only once it matched (a blob that does
//! not is discarded: nothing half-written is ever in `blobs/`). The image is
//! unpacked before its name is recorded, so a name in the store always has
//! a whole image; two `peapod` processes pulling the same image write to
//! their own temporary files and publish by rename.
//!
//! Transport: HTTPS, verified against the system's CA store plus the
//! registry's own CAs (`certs.d`, as podman and docker keep them). A
//! registry on loopback (as docker treats 127.0.0.0/8), one listed as
//! insecure in the settings, or `--tls-verify=false` may fall back to plain
//! HTTP (and, with `--tls-verify=false`, skip certificate checks): always
//! with a warning.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::digest::Digest;
use super::error::ImageError;
use super::oci::{self, Descriptor, Document};
use super::reference::ImageRef;
use super::store::ImageStore;

pub mod auth;

/// The manifest media types a pull accepts: OCI and Docker v2 schema 2,
/// images and indexes.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The largest manifest accepted.
const MAX_MANIFEST: usize = 4 << 20;

/// How a pull reaches the registry.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `--tls-verify=false`: no certificate checks, and plain HTTP if the
    /// registry speaks no TLS.
    pub no_tls_verify: bool,
    /// Registries (`host[:port]`) reached like that, from the settings.
    pub insecure_registries: Vec<String>,
    /// `--cert-dir`: the CA certificates (`*.crt`) to trust besides the
    /// system's, instead of the registry's `certs.d` directories.
    pub cert_dir: Option<PathBuf>,
    /// `--authfile`: the credentials file, instead of the usual ones.
    pub auth_file: Option<PathBuf>,
}

/// What a pull is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The manifest is in: these blobs, of these sizes, make the image.
    Resolved {
        /// The image's manifest digest.
        digest: String,
        /// (digest, size) of the config and the layers.
        blobs: Vec<(String, u64)>,
    },
    /// A blob the store already has: not fetched.
    Cached {
        /// Its digest.
        digest: String,
    },
    /// Bytes of a blob came.
    Fetching {
        /// Its digest.
        digest: String,
        /// Bytes so far.
        done: u64,
    },
    /// A blob is whole and checked.
    Fetched {
        /// Its digest.
        digest: String,
    },
    /// Unpacking the layers.
    Unpacking,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The digest the name now stands for (a manifest, or an index).
    pub digest: String,
    /// Blobs fetched (not in the store before).
    pub fetched_blobs: usize,
    /// Their bytes.
    pub fetched_bytes: u64,
}

/// Pull `image` (a registry name) into `store` and record its name.
pub fn pull(
    store: &ImageStore,
    image: &ImageRef,
    opts: &PullOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Pulled, ImageError> {
    let ImageRef::Named { name, tag, digest } = image else {
        return Err(ImageError::InvalidImage {
            image: image.to_string(),
            problem: "only registry names (NAME[:TAG] or NAME@DIGEST) are pulled".into(),
        });
    };
    let shown = image.to_string();
    let (registry, repository) = name
        .split_once('/')
        .ok_or_else(|| pull_error(&shown, format!("{name:?} names no registry")))?;
    let reference = match digest {
        Some(d) => Reference::with_digest(registry.into(), repository.into(), d.clone()),
        None => Reference::with_tag(
            registry.into(),
            repository.into(),
            tag.clone().unwrap_or_else(|| "latest".into()),
        ),
    };
    let credentials = auth::lookup(registry, opts.auth_file.as_deref())
        .map_err(|problem| pull_error(&shown, problem))?;
    let cas = certificates(registry, opts).map_err(|problem| pull_error(&shown, problem))?;
    let ctx = Context {
        shown: &shown,
        registry,
        credentials: &credentials,
        cas: &cas,
    };
    let runtime = runtime(&shown)?;
    // No prune removes what this pull fetched before its name is written.
    let _hold = store.hold(&shown)?;
    let fetched = runtime.block_on(fetch(store, &reference, opts, &ctx, progress))?;
    progress(Progress::Unpacking);
    // Unpacked (and every layer checked) before the name is recorded.
    let top = Digest::parse(&fetched.digest, &shown)?;
    store.resolve(&ImageRef::Named {
        name: name.clone(),
        tag: None,
        digest: Some(top.to_string()),
    })?;
    let key = image.store_key().expect("a registry name has a store key");
    store.record_pull(&key, &top, fetched.size, &shown)?;
    Ok(Pulled {
        digest: fetched.digest,
        fetched_blobs: fetched.blobs,
        fetched_bytes: fetched.bytes,
    })
}

/// Check `user`:`password` with `registry` (`peapod login`): a request
/// with them must not be refused.
pub fn check_login(
    registry: &str,
    user: &str,
    password: &str,
    opts: &PullOptions,
) -> Result<(), ImageError> {
    let shown = registry.to_owned();
    let credentials = auth::Credentials {
        auth: RegistryAuth::Basic(user.to_owned(), password.to_owned()),
        source: None,
        tried: Vec::new(),
    };
    let cas = certificates(registry, opts).map_err(|p| pull_error(&shown, p))?;
    let ctx = Context {
        shown: &shown,
        registry,
        credentials: &credentials,
        cas: &cas,
    };
    // Any repository will do: a refusal is about the credentials, a
    // missing one is not.
    let probe = Reference::with_tag(
        registry.into(),
        "peapod/login-check".into(),
        "latest".into(),
    );
    let runtime = runtime(&shown)?;
    runtime.block_on(async {
        match connect(&probe, opts, &ctx).await {
            Ok(_) => Ok(()),
            Err(ImageError::Pull { problem, .. })
                if problem.contains("has no") || problem.contains("lacks") =>
            {
                Ok(())
            }
            Err(ImageError::Pull { problem, .. }) if problem.contains("refused access") => {
                Err(pull_error(
                    &shown,
                    format!("{registry} refused the user name or password of {user:?}"),
                ))
            }
            Err(e) => Err(e),
        }
    })
}

/// What a pull reads its failures against.
struct Context<'a> {
    shown: &'a str,
    registry: &'a str,
    credentials: &'a auth::Credentials,
    cas: &'a [PathBuf],
}

struct Fetched {
    digest: String,
    size: u64,
    blobs: usize,
    bytes: u64,
}

/// The runtime a pull's requests run on, for its length.
fn runtime(shown: &str) -> Result<tokio::runtime::Runtime, ImageError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| pull_error(shown, format!("cannot start the pull: {e}")))
}

fn pull_error(image: &str, problem: impl Into<String>) -> ImageError {
    ImageError::Pull {
        image: image.to_owned(),
        problem: problem.into(),
        unreachable: false,
    }
}

/// Whether `registry` (`host[:port]`) is on this machine's loopback.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The CA files to trust for `registry`: `--cert-dir`'s, else those of
/// its `certs.d` directories (podman's, then docker's).
fn certificates(registry: &str, opts: &PullOptions) -> Result<Vec<PathBuf>, String> {
    let dirs: Vec<PathBuf> = match &opts.cert_dir {
        Some(dir) => vec![dir.clone()],
        None => {
            let mut dirs = Vec::new();
            if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                dirs.push(
                    PathBuf::from(home)
                        .join(".config/containers/certs.d")
                        .join(registry),
                );
            }
            dirs.push(PathBuf::from("/etc/containers/certs.d").join(registry));
            dirs.push(PathBuf::from("/etc/docker/certs.d").join(registry));
            dirs
        }
    };
    let mut files = Vec::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.cert_dir.is_none() => {
                continue
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the CA directory {}: {e}",
                    dir.display()
                ))
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// A client for `registry`: `https` or plain HTTP; `verify` the
/// certificates (against the system store and `cas`).
fn make_client(
    registry: &str,
    https: bool,
    verify: bool,
    cas: &[PathBuf],
) -> Result<Client, String> {
    // rustls' provider, once per process (a second install is refused, and
    // harmless).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut extra = Vec::new();
    for path in cas {
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read the CA certificate {}: {e}", path.display()))?;
        extra.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let config = ClientConfig {
        protocol: if https {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(vec![registry.to_owned()])
        },
        accept_invalid_certificates: !verify,
        extra_root_certificates: extra,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: concat!("peapod/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    Ok(Client::new(config))
}

/// Fetch the manifest (and the platform's, under an index), the config and
/// the layers into the store.
async fn fetch(
    store: &ImageStore,
    reference: &Reference,
    opts: &PullOptions,
    ctx: &Context<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fetched, ImageError> {
    let shown = ctx.shown;
    let auth = ctx.credentials.auth.clone();
    let (client, bytes) = connect(reference, opts, ctx).await?;
    let top = store_manifest(store, &bytes, reference.digest(), shown)?;
    let mut manifest: Document = oci::parse(&bytes, shown, &format!("manifest {top}"))?;
    let mut image_digest = top.clone();
    if let Some(entries) = &manifest.manifests {
        let chosen = oci::select_platform(entries, shown)?;
        let d = Digest::parse(&chosen.digest, shown)?;
        let by_digest = Reference::with_digest(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            d.to_string(),
        );
        let (bytes, _) = client
            .pull_manifest_raw(&by_digest, &auth, ACCEPT)
            .await
            .map_err(|e| explain(e, &by_digest, ctx))?;
        store_manifest(store, &bytes, Some(&d.to_string()), shown)?;
        manifest = oci::parse(&bytes, shown, &format!("manifest {d}"))?;
        if manifest.manifests.is_some() {
            return Err(pull_error(
                shown,
                format!("manifest {d} is an index inside an index"),
            ));
        }
        image_digest = d;
    }
    let config = manifest
        .config
        .clone()
        .ok_or_else(|| pull_error(shown, format!("manifest {image_digest} has no config")))?;
    let layers = manifest.layers.clone().unwrap_or_default();
    for (i, l) in layers.iter().enumerate() {
        if is_foreign(l) {
            return Err(pull_error(
                shown,
                format!(
                    "layer {i} ({}) is a foreign, non-distributable layer ({}): its content is \
                     not in the registry; peapod runs Linux images whose layers all are",
                    l.digest, l.media_type
                ),
            ));
        }
    }
    let blobs: Vec<&Descriptor> = std::iter::once(&config).chain(&layers).collect();
    // Sizes bound what is fetched: a manifest must give them.
    if let Some(b) = blobs.iter().find(|b| b.size == 0) {
        return Err(pull_error(
            shown,
            format!("manifest {image_digest} gives blob {} no size", b.digest),
        ));
    }
    progress(Progress::Resolved {
        digest: image_digest.to_string(),
        blobs: blobs.iter().map(|b| (b.digest.clone(), b.size)).collect(),
    });
    let mut fetched = Fetched {
        digest: top.to_string(),
        size: blobs.iter().map(|b| b.size).sum(),
        blobs: 0,
        bytes: 0,
    };
    for blob in blobs {
        let digest = Digest::parse(&blob.digest, shown)?;
        if store.has_blob(&digest) {
            progress(Progress::Cached {
                digest: digest.to_string(),
            });
            continue;
        }
        let size = fetch_blob(store, &client, reference, &digest, blob.size, ctx, progress).await?;
        fetched.blobs += 1;
        fetched.bytes += size;
    }
    Ok(fetched)
}

/// Reach the registry and fetch `reference`'s manifest: over HTTPS, or
/// plain HTTP where that is allowed and the registry speaks no TLS. The
/// client that worked, and the manifest's bytes.
async fn connect(
    reference: &Reference,
    opts: &PullOptions,
    ctx: &Context<'_>,
) -> Result<(Client, Vec<u8>), ImageError> {
    let shown = ctx.shown;
    let insecure = opts.no_tls_verify
        || is_loopback(ctx.registry)
        || opts.insecure_registries.iter().any(|r| r == ctx.registry);
    let verify = !opts.no_tls_verify;
    let auth = ctx.credentials.auth.clone();
    let mut client =
        make_client(ctx.registry, true, verify, ctx.cas).map_err(|p| pull_error(shown, p))?;
    let first = client.pull_manifest_raw(reference, &auth, ACCEPT).await;
    let (bytes, _) = match first {
        Ok(got) => got,
        // No TLS there: plain HTTP where that is allowed, said aloud.
        Err(OciDistributionError::RequestError(e)) if insecure && !e.is_timeout() => {
            let http = make_client(ctx.registry, false, verify, ctx.cas)
                .map_err(|p| pull_error(shown, p))?;
            let answer = http.pull_manifest_raw(reference, &auth, ACCEPT).await;
            // A registry answered in plain HTTP (an image, or a registry's
            // refusal); anything else (no answer, a TLS server's complaint)
            // leaves the HTTPS failure as the one to explain.
            let registry_spoke = matches!(
                answer,
                Ok(_)
                    | Err(OciDistributionError::RegistryError { .. })
                    | Err(OciDistributionError::UnauthorizedError { .. })
                    | Err(OciDistributionError::AuthenticationFailure(_))
            );
            if !registry_spoke {
                return Err(explain(
                    OciDistributionError::RequestError(e),
                    reference,
                    ctx,
                ));
            }
            match answer {
                Ok(got) => {
                    log::warn!(
                        "{}: {} does not answer HTTPS; pulling over plain HTTP{}",
                        shown,
                        ctx.registry,
                        if is_loopback(ctx.registry) {
                            " (a registry on this machine's loopback)"
                        } else {
                            " (--tls-verify=false or an insecure registry)"
                        }
                    );
                    client = http;
                    got
                }
                // It speaks plain HTTP, and said no.
                Err(other) => return Err(explain_manifest(&http, reference, other, ctx).await),
            }
        }
        Err(e) => return Err(explain_manifest(&client, reference, e, ctx).await),
    };
    if !verify {
        log::warn!(
            "{shown}: --tls-verify=false: {} is not authenticated (its certificate is not checked)",
            ctx.registry
        );
    }
    Ok((client, bytes.to_vec()))
}

/// Check manifest `bytes` (against `want`, when the reference pinned it)
/// and keep them in the store; their digest.
fn store_manifest(
    store: &ImageStore,
    bytes: &[u8],
    want: Option<&str>,
    shown: &str,
) -> Result<Digest, ImageError> {
    if bytes.len() > MAX_MANIFEST {
        return Err(pull_error(
            shown,
            format!(
                "the manifest is {} bytes, more than the {MAX_MANIFEST} accepted",
                bytes.len()
            ),
        ));
    }
    let actual = Digest::of(bytes);
    if let Some(want) = want {
        Digest::parse(want, shown)?.check(&actual, shown, "the manifest")?;
    }
    store.write_blob_bytes(bytes, shown)?;
    Ok(actual)
}

/// A layer whose content is elsewhere (Windows base layers).
fn is_foreign(d: &Descriptor) -> bool {
    d.media_type.contains("foreign")
        || d.media_type.contains("nondistributable")
        || !d.urls.is_empty()
}

/// Stream blob `digest` into the store, checked; its size.
async fn fetch_blob(
    store: &ImageStore,
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    expected_size: u64,
    ctx: &Context<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, ImageError> {
    let shown = ctx.shown;
    let name = digest.to_string();
    let mut stream = client
        .pull_blob_stream(reference, name.as_str())
        .await
        .map_err(|e| explain(e, reference, ctx))?;
    let mut sink = store.blob_sink(shown)?;
    let mut last_report = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let digest_error = e
                .get_ref()
                .is_some_and(|inner| inner.to_string().to_lowercase().contains("digest"));
            if digest_error {
                pull_error(
                    shown,
                    format!("blob {name} does not match its digest; it was discarded ({e})"),
                )
            } else {
                pull_error(
                    shown,
                    format!("reading blob {name} from {}: {e}", ctx.registry),
                )
            }
        })?;
        sink.write(&chunk)?;
        // A registry that sends more than the manifest said is cut off.
        if sink.size() > expected_size {
            return Err(pull_error(
                shown,
                format!(
                    "blob {name} is larger than the {expected_size} bytes its manifest says; it \
                     was discarded"
                ),
            ));
        }
        if sink.size() - last_report >= 256 << 10 {
            last_report = sink.size();
            progress(Progress::Fetching {
                digest: name.clone(),
                done: last_report,
            });
        }
    }
    let size = sink.size();
    sink.finish(digest, &format!("blob {name} from {}", ctx.registry))
        .map_err(|e| match e {
            ImageError::DigestMismatch { actual, .. } => pull_error(
                shown,
                format!(
                    "blob {name} from {} has digest {actual}: it does not match, so it was \
                     discarded (the registry's copy is corrupt)",
                    ctx.registry
                ),
            ),
            other => other,
        })?;
    progress(Progress::Fetched { digest: name });
    Ok(size)
}

/// Say why the manifest of `reference` could not be had: for a missing tag,
/// whether the repository is there at all, and its tags.
async fn explain_manifest(
    client: &Client,
    reference: &Reference,
    e: OciDistributionError,
    ctx: &Context<'_>,
) -> ImageError {
    let unknown_manifest = matches!(&e, OciDistributionError::RegistryError { envelope, .. }
        if envelope.errors.iter().any(|x| x.code == OciErrorCode::ManifestUnknown));
    let Some(tag) = reference
        .tag()
        .filter(|_| unknown_manifest && reference.digest().is_none())
    else {
        return explain(e, reference, ctx);
    };
    let repository = reference.repository();
    let registry = ctx.registry;
    match client
        .list_tags(reference, &ctx.credentials.auth, Some(50), None)
        .await
    {
        Ok(list) if list.tags.is_empty() => pull_error(
            ctx.shown,
            format!("{registry} has no repository {repository:?} (no tags); check the name"),
        ),
        Ok(list) => {
            let mut tags = list.tags;
            tags.sort();
            let shown: Vec<&str> = tags.iter().take(20).map(String::as_str).collect();
            pull_error(
                ctx.shown,
                format!(
                    "{registry} has no tag {tag:?} of {repository:?}; its tags: {}{}",
                    shown.join(", "),
                    if tags.len() > shown.len() {
                        ", ..."
                    } else {
                        ""
                    }
                ),
            )
        }
        Err(OciDistributionError::RegistryError { envelope, .. })
            if envelope
                .errors
                .iter()
                .any(|x| x.code == OciErrorCode::NameUnknown) =>
        {
            pull_error(
                ctx.shown,
                format!("{registry} has no repository {repository:?}; check the name"),
            )
        }
        Err(_) => explain(e, reference, ctx),
    }
}

/// Say why a request failed, naming the reference and the fix.
fn explain(e: OciDistributionError, reference: &Reference, ctx: &Context<'_>) -> ImageError {
    let registry = ctx.registry;
    let tried = || ctx.credentials.describe();
    let problem = match &e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => format!(
            "{registry} refused access ({}); log in with `peapod login {registry}`",
            tried()
        ),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let has = |c: OciErrorCode| codes.iter().any(|x| **x == c);
            if has(OciErrorCode::Unauthorized) || has(OciErrorCode::Denied) {
                format!(
                    "{registry} refused access ({}); log in with `peapod login {registry}`",
                    tried()
                )
            } else if has(OciErrorCode::NameUnknown) {
                format!(
                    "{registry} has no repository {:?}; check the name",
                    reference.repository()
                )
            } else if has(OciErrorCode::ManifestUnknown) {
                match (reference.tag(), reference.digest()) {
                    (_, Some(d)) => format!(
                        "{registry} has no image {d} in {:?}; check the digest",
                        reference.repository()
                    ),
                    (t, None) => format!(
                        "{registry} has no tag {:?} of {:?}; check the tag",
                        t.unwrap_or("latest"),
                        reference.repository()
                    ),
                }
            } else if has(OciErrorCode::BlobUnknown) {
                format!("{registry} lacks a blob of the image (its copy is incomplete)")
            } else {
                format!("{registry} answered: {envelope}")
            }
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => {
            format!("{registry} has no image {reference}; check the name and the tag")
        }
        OciDistributionError::ServerError { code, message, .. } => {
            let mut m = message.clone();
            peapod_proto::truncate_utf8(&mut m, 200);
            format!("{registry} answered HTTP {code}: {}", m.trim())
        }
        OciDistributionError::RequestError(re) => {
            let (problem, unreachable) = request_problem(re, re.is_timeout(), registry, ctx.cas);
            return ImageError::Pull {
                image: ctx.shown.to_owned(),
                problem,
                unreachable,
            };
        }
        other => format!("{registry}: {other}"),
    };
    pull_error(ctx.shown, problem)
}

/// A failed request: no such host, nothing listening, TLS; and whether
/// the registry was not reached at all.
fn request_problem(
    e: &(dyn std::error::Error + 'static),
    timeout: bool,
    registry: &str,
    cas: &[PathBuf],
) -> (String, bool) {
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        chain.push(err.to_string());
        cur = err.source();
    }
    let all = chain.join(": ");
    let lower = all.to_lowercase();
    if lower.contains("dns error")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
    {
        let p = format!(
            "cannot find the registry host {registry:?} (no such name, or no network); check \
             the registry in the image name"
        );
        (p, true)
    } else if lower.contains("connection refused") {
        let p =
            format!("nothing answers at {registry} (connection refused); is the registry running?");
        (p, true)
    } else if lower.contains("certificate") || lower.contains("unknownissuer") {
        let tried = if cas.is_empty() {
            "the system's CA store (there is no certs.d directory for it)".to_owned()
        } else {
            let files: Vec<String> = cas.iter().map(|p| p.display().to_string()).collect();
            format!("the system's CA store and {}", files.join(", "))
        };
        let p = format!(
            "TLS with {registry} failed: its certificate is not trusted ({}); tried {tried}: put \
             its CA in ~/.config/containers/certs.d/{registry}/ca.crt or pass --cert-dir DIR (or \
             --tls-verify=false, unsafe)",
            chain.last().map_or("", String::as_str)
        );
        (p, false)
    } else if timeout {
        (format!("{registry} did not answer in time"), true)
    } else {
        (format!("cannot reach {registry}: {all}"), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_loopback_registries() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "127.9.9.9",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn test_foreign_layers() {
        let d = |media: &str, urls: &[&str]| Descriptor {
            media_type: media.into(),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            ..Descriptor::default()
        };
        assert!(is_foreign(&d(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            &[]
        )));
        assert!(is_foreign(&d(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            &[]
        )));
        assert!(is_foreign(&d(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &["https://x/y"]
        )));
        assert!(!is_foreign(&d(
            "application/vnd.oci.image.layer.v1.tar+zstd",
            &[]
        )));
    }
}
