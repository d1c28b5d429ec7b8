//! `peapod initramfs -o FILE`: write the guest initramfs that `run` builds in
//! memory, to boot peapod's guest under another VMM (benchmarks use it to
//! boot the same guest under QEMU).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Failure, GuestArgs};
use crate::sandbox::artifacts;
use crate::vmm::boot::initramfs;

/// Arguments of `peapod initramfs`.
#[derive(Debug, clap::Args)]
pub struct InitramfsArgs {
    /// Where to write the newc cpio archive.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// Write the initramfs.
pub fn initramfs(args: InitramfsArgs) -> Result<ExitCode, Failure> {
    let init =
        artifacts::read_init(&artifacts::init(&args.guest.paths())).map_err(Failure::Usage)?;
    let archive = initramfs::build(init)
        .context("cannot build the initramfs")
        .map_err(Failure::Runtime)?;
    std::fs::write(&args.output, archive)
        .with_context(|| format!("cannot write {}", args.output.display()))
        .map_err(Failure::Usage)?;
    Ok(ExitCode::SUCCESS)
}
