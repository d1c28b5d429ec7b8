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
    /// List the images of the local store (NAME:TAG and manifest DIGEST).
    #[command(alias = "list")]
    Ls,
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
    }
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
    let images = store().list().map_err(|e| Failure::Usage(anyhow!(e)))?;
    print!("{}", table(&images));
    Ok(ExitCode::SUCCESS)
}

/// The `image ls` table: a header, then one row per image.
fn table(images: &[(String, String)]) -> String {
    const NAME: &str = "NAME:TAG";
    let width = images
        .iter()
        .map(|(n, _)| n.len())
        .chain([NAME.len()])
        .max()
        .unwrap_or_default();
    let mut out = format!("{NAME:<width$}  DIGEST\n");
    for (name, digest) in images {
        out.push_str(&format!("{name:<width$}  {digest}\n"));
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
        assert_eq!(table(&[]), "NAME:TAG  DIGEST\n");
        let rows = [
            ("busybox:latest".to_string(), "sha256:aa".to_string()),
            ("a:b".to_string(), "sha256:bb".to_string()),
        ];
        assert_eq!(
            table(&rows),
            "NAME:TAG        DIGEST\nbusybox:latest  sha256:aa\na:b             sha256:bb\n"
        );
    }
}
