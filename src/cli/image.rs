//! `peapod image load FILE` and `peapod image ls`: peapod's local image
//! store (`<cache>/images`), which pods name by `NAME[:TAG]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;

use super::Failure;
use crate::image::ImageStore;

/// Arguments of `peapod image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The `peapod image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Load a docker archive (`docker save`) or an OCI archive (`podman
    /// save --format oci-archive`, `skopeo copy ... oci-archive:`) into the
    /// local store; prints the loaded names.
    Load {
        /// The archive (a tar file).
        file: PathBuf,
    },
    /// List the images of the local store: NAME:TAG, manifest DIGEST,
    /// SIZE, and when it was pulled (or that it was loaded).
    #[command(alias = "list")]
    Ls,
    /// Forget images by name (their content stays until `prune`); an image
    /// a running pod uses is refused.
    #[command(alias = "remove")]
    Rm {
        /// NAME[:TAG] or NAME@DIGEST, as `image ls` shows them.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove the blobs, layers and root filesystems no image name and no
    /// pod uses.
    Prune,
}

/// The local image store every command uses: `<cache>/images`.
pub fn store() -> ImageStore {
    crate::sandbox::artifacts::image_store()
}

/// Run `peapod image ...`.
pub fn image(args: ImageArgs) -> Result<ExitCode, Failure> {
    match args.command {
        ImageCommand::Load { file } => load(&file),
        ImageCommand::Ls => ls(),
        ImageCommand::Rm { images } => rm(&images),
        ImageCommand::Prune => prune(),
    }
}

/// The store key (normalised `name:tag` or `name@digest`) of `text`.
fn key_of(text: &str) -> Result<(crate::image::ImageRef, String), Failure> {
    let image: crate::image::ImageRef = text.parse().map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    let key = image.store_key().ok_or_else(|| {
        Failure::Usage(anyhow!(
            "{text} is not an image name of the store (`peapod image ls` lists them)"
        ))
    })?;
    Ok((image, key))
}

/// The manifests pods use, with whether that pod runs.
fn pod_images() -> Vec<(String, String, bool)> {
    use crate::sandbox::state::Liveness;
    use peapod_proto::PodPhase;
    let mut out = Vec::new();
    for (_, state) in crate::sandbox::list().unwrap_or_default() {
        let Ok(state) = state else { continue };
        let running = matches!(
            state.liveness(),
            Liveness::Phase(PodPhase::Running | PodPhase::Pending)
        );
        for c in &state.containers {
            if let Some(d) = &c.image_digest {
                out.push((state.name.clone(), d.clone(), running));
            }
        }
    }
    out
}

fn rm(images: &[String]) -> Result<ExitCode, Failure> {
    let store = store();
    let pods = pod_images();
    for text in images {
        let (image, key) = key_of(text)?;
        let Some(digest) = store.lookup(&key).or_else(|| {
            store
                .has_image(&image)
                .then(|| key.split_once('@').map(|(_, d)| d.to_owned()))
                .flatten()
        }) else {
            return Err(Failure::Usage(anyhow!(
                "no image {text} in the store (`peapod image ls` lists them)"
            )));
        };
        // The name, and the platform's manifest under an index.
        let platform = store.resolve(&image).ok().and_then(|r| r.digest);
        let users: Vec<&str> = pods
            .iter()
            .filter(|(_, d, running)| *running && (*d == digest || Some(d) == platform.as_ref()))
            .map(|(p, _, _)| p.as_str())
            .collect();
        if !users.is_empty() {
            return Err(Failure::Usage(anyhow!(
                "image {text} is used by running pod(s) {}; stop them first",
                users.join(", ")
            )));
        }
        store
            .remove_ref(&key)
            .map_err(|e| Failure::Usage(anyhow!(e)))?;
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn prune() -> Result<ExitCode, Failure> {
    let keep: Vec<String> = pod_images().into_iter().map(|(_, d, _)| d).collect();
    let pruned = store()
        .prune(&keep)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    println!(
        "removed {} item(s), {}",
        pruned.items,
        super::pull::human(pruned.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn load(file: &Path) -> Result<ExitCode, Failure> {
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Failure::Usage(anyhow!(
                "{} is not a file; `peapod image load` takes an image archive (a tar made by \
                 `docker save` or `podman save`)",
                file.display()
            )))
        }
        Err(e) => {
            return Err(Failure::Usage(anyhow!(e).context(format!(
                "cannot read the image archive {}",
                file.display()
            ))))
        }
    }
    if !looks_like_archive(file) {
        return Err(Failure::Usage(anyhow!(
            "{} is not an image archive (not a tar file); make one with `docker save IMAGE -o \
             FILE`, `podman save IMAGE -o FILE` or `skopeo copy ... oci-archive:FILE`",
            file.display()
        )));
    }
    let names = store().load(file).map_err(|e| Failure::Usage(anyhow!(e)))?;
    for name in names {
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `file` starts like a tar (the `ustar` magic of POSIX, GNU and
/// pax tars) or a compressed stream (which the store checks further).
fn looks_like_archive(file: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(512);
    let read = std::fs::File::open(file).and_then(|f| f.take(512).read_to_end(&mut head));
    if read.is_err() {
        // Let the store report the read error.
        return true;
    }
    let compressed: [&[u8]; 4] = [b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ"];
    compressed.iter().any(|m| head.starts_with(m)) || head.get(257..262) == Some(b"ustar")
}

fn ls() -> Result<ExitCode, Failure> {
    let images = store().entries().map_err(|e| Failure::Usage(anyhow!(e)))?;
    print!("{}", table(&images, crate::sandbox::state::now_ns()));
    Ok(ExitCode::SUCCESS)
}

/// How long ago `then` was, at `now` (ns), as `ps` says ages.
fn ago(then: u64, now: u64) -> String {
    let s = now.saturating_sub(then) / 1_000_000_000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// The `image ls` table: a header, then one row per image.
fn table(images: &[crate::image::ImageEntry], now: u64) -> String {
    const NAME: &str = "NAME:TAG";
    let width = images
        .iter()
        .map(|e| e.name.len())
        .chain([NAME.len()])
        .max()
        .unwrap_or_default();
    let mut out = format!("{NAME:<width$}  {:<71}  {:>10}  PULLED\n", "DIGEST", "SIZE");
    for e in images {
        let (size, pulled) = match &e.origin {
            Some(o) if o.pulled => (super::pull::human(o.size), ago(o.at_ns, now)),
            Some(o) => (super::pull::human(o.size), "loaded".to_owned()),
            None => ("-".to_owned(), "loaded".to_owned()),
        };
        out.push_str(&format!(
            "{:<width$}  {:<71}  {size:>10}  {pulled}\n",
            e.name, e.digest
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_image_looks_like_archive() {
        let dir = std::env::temp_dir().join(format!("peapod-image-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let mut tar = vec![0u8; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert!(looks_like_archive(&file("a.tar", &tar)));
        assert!(looks_like_archive(&file("a.tar.gz", b"\x1f\x8b\x08rest")));
        assert!(!looks_like_archive(&file(
            "pod.yaml",
            b"apiVersion: v1\nkind: Pod\n"
        )));
        assert!(!looks_like_archive(&file("empty", b"")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_image_table_aligns_columns() {
        use crate::image::{ImageEntry, Origin};
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let head = format!("NAME:TAG  {:<71}  {:>10}  PULLED\n", "DIGEST", "SIZE");
        assert_eq!(table(&[], 0), head);
        let rows = [
            ImageEntry {
                name: "busybox:latest".into(),
                digest: d('a'),
                origin: Some(Origin {
                    pulled: true,
                    at_ns: 0,
                    size: 3 << 20,
                }),
            },
            ImageEntry {
                name: "a:b".into(),
                digest: d('b'),
                origin: None,
            },
        ];
        let text = table(&rows, 125_000_000_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME:TAG        DIGEST"), "{text}");
        assert!(
            lines[1].starts_with(&format!("busybox:latest  {}", d('a'))),
            "{text}"
        );
        assert!(lines[1].ends_with("3.0 MiB  2m ago"), "{text}");
        assert!(lines[2].ends_with("-  loaded"), "{text}");
    }
}
