//! The errors of image resolution, unpacking and the local image store.

use std::io;
use std::path::PathBuf;

/// Why an image could not be resolved, unpacked, loaded or listed.
///
/// `image` fields hold the reference or file as the user wrote it, so that
/// every message says which image failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A registry pull failed; `problem` says why and what to do.
    #[error("image {image}: {problem}")]
    Pull {
        /// The reference.
        image: String,
        /// What went wrong, naming the registry and the fix.
        problem: String,
        /// The registry could not be reached at all (no such host, nothing
        /// listening, no answer): a copy in the store may do instead.
        unreachable: bool,
    },
    /// `rootfs:DIR` names something that is not a directory.
    #[error(
        "image {image}: {} is not a directory; rootfs: needs an unpacked root filesystem \
         directory (e.g. one made by scripts/build-test-image)", path.display()
    )]
    RootfsNotDir {
        /// The reference.
        image: String,
        /// The path that was checked.
        path: PathBuf,
    },
    /// A file of the image (or of the store) could not be read.
    #[error("image {image}: cannot read {}", path.display())]
    ReadFile {
        /// The reference.
        image: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A JSON document of the image is malformed.
    #[error("image {image}: {what} is not valid")]
    ParseJson {
        /// The reference.
        image: String,
        /// Which document, e.g. `index.json` or `config sha256:…`.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The image is structurally wrong (missing file, bad field, …).
    #[error("image {image}: {problem}")]
    InvalidImage {
        /// The reference.
        image: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A blob the image refers to is absent.
    #[error(
        "image {image}: blob {digest} is missing (looked for {}); the image is incomplete: \
         export or copy it again", path.display()
    )]
    MissingBlob {
        /// The reference.
        image: String,
        /// The blob's digest.
        digest: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Content does not match the digest it is named by.
    #[error(
        "image {image}: {what} has digest {actual}, but {expected} was expected; the image \
         is corrupt or was modified: export or copy it again"
    )]
    DigestMismatch {
        /// The reference.
        image: String,
        /// Which content, e.g. `layer sha256:…`.
        what: String,
        /// The digest the content should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// The OCI index has no image with the requested tag.
    #[error(
        "image {image}: no image tagged {tag:?} in {}; available tags: {}",
        index.display(), list_or_none(available)
    )]
    TagNotFound {
        /// The reference.
        image: String,
        /// The requested tag.
        tag: String,
        /// The index file.
        index: PathBuf,
        /// The tags the index has.
        available: Vec<String>,
    },
    /// The OCI index has several images and no tag picks one.
    #[error(
        "image {image}: {} holds {count} images; pick one with :TAG (available tags: {})",
        index.display(), list_or_none(available)
    )]
    AmbiguousImage {
        /// The reference.
        image: String,
        /// The index file.
        index: PathBuf,
        /// How many images it holds.
        count: usize,
        /// The tags the index has.
        available: Vec<String>,
    },
    /// An image index has no linux/amd64 image.
    #[error(
        "image {image}: no linux/amd64 image in the index (it has: {}); peapod runs \
         linux/amd64 guests",
        list_or_none(available)
    )]
    NoPlatform {
        /// The reference.
        image: String,
        /// The platforms the index offers.
        available: Vec<String>,
    },
    /// A named image is not in the local store.
    #[error(
        "image {name} is not in peapod's local store; load it with `peapod image load FILE` \
         (see `peapod image ls`)"
    )]
    NotInStore {
        /// The name as the user knows it, e.g. `busybox:latest`.
        name: String,
    },
    /// A layer's compression is not gzip or none.
    #[error("image {image}: layer {digest} is compressed with {format}, which peapod cannot read yet; re-export the image with gzip or uncompressed layers")]
    UnsupportedCompression {
        /// The reference.
        image: String,
        /// The layer's digest.
        digest: String,
        /// The compression format found.
        format: &'static str,
    },
    /// A layer could not be read as a tar stream.
    #[error("image {image}: cannot read layer {digest}")]
    ReadLayer {
        /// The reference.
        image: String,
        /// The layer's digest.
        digest: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A tar entry tries to leave its root or is otherwise unsafe.
    #[error(
        "image {image}: layer {digest}: entry {entry:?} {reason}; the layer is malformed or \
         hostile and was not unpacked"
    )]
    UnsafeEntry {
        /// The reference.
        image: String,
        /// The layer's digest.
        digest: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing into the store failed.
    #[error("image {image}: cannot write {} in peapod's image store", path.display())]
    WriteStore {
        /// The reference (or archive).
        image: String,
        /// What was being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store's root is another user's, or others may write to it.
    #[error("peapod's image store {} is not safe to use: {why}; {fix}", path.display())]
    UntrustedStore {
        /// The store's root.
        path: PathBuf,
        /// What is wrong.
        why: String,
        /// How to fix it.
        fix: String,
    },
    /// A digest peapod cannot check (only sha256 is supported).
    #[error(
        "image {image}: digest {digest:?} is not a sha256 digest; peapod verifies sha256 only"
    )]
    UnsupportedDigest {
        /// The reference.
        image: String,
        /// The digest as written.
        digest: String,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
