//! `peapod volume ls|inspect|rm`: the named volumes of
//! PersistentVolumeClaims (see `sandbox::claims`).

use std::process::ExitCode;

use anyhow::anyhow;

use super::Failure;
use crate::sandbox::claims;

/// Arguments of `peapod volume`.
#[derive(Debug, clap::Args)]
pub struct VolumeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VolumeCommand,
}

/// `peapod volume` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// List the named volumes.
    Ls,
    /// Show a named volume, as JSON.
    Inspect {
        /// The volume (its claim's name).
        name: String,
    },
    /// Remove named volumes and their data (refused while a pod uses one).
    Rm {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Bytes as a Kubernetes quantity (Gi, Mi, Ki, or bytes).
fn quantity(b: u64) -> String {
    for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if b >= 1 << shift && b % (1 << shift) == 0 {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// `peapod volume`.
pub fn volume(args: VolumeArgs) -> Result<ExitCode, Failure> {
    match args.command {
        VolumeCommand::Ls => {
            println!("{:<32} {:<10} {:<6} USED BY", "NAME", "REQUEST", "AGE");
            for v in claims::list() {
                let users = claims::users(&v.name);
                println!(
                    "{:<32} {:<10} {:<6} {}",
                    v.name,
                    v.storage.map_or("-".into(), quantity),
                    super::pods::age(v.created_ns),
                    if users.is_empty() {
                        "-".into()
                    } else {
                        users.join(",")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Inspect { name } => {
            let info = claims::inspect(&name).ok_or_else(|| {
                Failure::Usage(anyhow!(
                    "no volume named {name} (`peapod volume ls` lists them)"
                ))
            })?;
            let mut value = serde_json::to_value(&info).map_err(|e| Failure::Runtime(e.into()))?;
            value["used_by"] = serde_json::json!(claims::users(&name));
            println!(
                "{}",
                serde_json::to_string_pretty(&value).map_err(|e| Failure::Runtime(e.into()))?
            );
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Rm { names } => {
            let mut failed = None;
            for name in &names {
                match claims::remove(name) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("peapod: error: {e}");
                        failed = Some(e);
                    }
                }
            }
            match failed {
                None => Ok(ExitCode::SUCCESS),
                Some(_) => Ok(ExitCode::from(2)),
            }
        }
    }
}
