//! `peapod pull`, `peapod login` and `peapod logout`: images from
//! registries, and the credentials for them.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use super::Failure;
use crate::image::registry::{self, auth, Progress, PullOptions};
use crate::image::{ImageError, ImageRef};

/// How to reach registries, for `pull` and `run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Check the registry's TLS certificate (false: don't, and allow plain
    /// HTTP; said aloud).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Trust the CA certificates (*.crt) in DIR for the registry, besides
    /// the system's (default: ~/.config/containers/certs.d/REGISTRY,
    /// /etc/containers/certs.d/REGISTRY, /etc/docker/certs.d/REGISTRY).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// The credentials file (default: $REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
    /// ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

impl RegistryArgs {
    /// The pull options, with the settings' insecure registries.
    pub fn options(&self) -> anyhow::Result<PullOptions> {
        let settings = crate::settings::Settings::load()?;
        Ok(PullOptions {
            no_tls_verify: !self.tls_verify,
            insecure_registries: settings.insecure_registries,
            cert_dir: self.cert_dir.clone(),
            auth_file: self.authfile.clone(),
        })
    }
}

/// Arguments of `peapod pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image: NAME[:TAG] or NAME@sha256:DIGEST (`nginx:1.27`,
    /// `ghcr.io/org/app@sha256:...`, `localhost:5000/app`).
    pub image: String,
    /// No progress display.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Run `peapod pull`.
pub fn pull(args: PullArgs) -> Result<ExitCode, Failure> {
    let image: ImageRef = args
        .image
        .parse()
        .map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    if !matches!(image, ImageRef::Named { .. }) {
        return Err(Failure::Usage(anyhow!(
            "{} is not a registry image; `peapod pull` takes NAME[:TAG] or NAME@DIGEST \
             (`peapod image load` reads archives)",
            args.image
        )));
    }
    let opts = args.registry.options().map_err(Failure::Usage)?;
    let store = super::image::store();
    let mut display = Display::new(!args.quiet);
    let pulled = registry::pull(&store, &image, &opts, &mut |p| display.show(p));
    display.end();
    let pulled = pulled.map_err(|e| failure(&e))?;
    if !args.quiet {
        eprintln!(
            "fetched {} of {} blob(s), {}",
            pulled.fetched_blobs,
            display.blobs.len(),
            human(pulled.fetched_bytes)
        );
    }
    println!("{}", pulled.digest);
    Ok(ExitCode::SUCCESS)
}

/// A pull failure is the user's input or the registry's answer: exit 2,
/// nothing was started.
fn failure(e: &ImageError) -> Failure {
    Failure::Usage(anyhow!("{e}"))
}

/// Bytes, for people.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The progress of a pull on stderr: on a terminal one line per blob,
/// redrawn, and the total; else a plain line per blob when it is done.
pub struct Display {
    on: bool,
    tty: bool,
    /// (digest, size, done, state)
    blobs: Vec<(String, u64, u64, &'static str)>,
    drawn: usize,
}

impl Display {
    /// A display; `on` false shows nothing.
    pub fn new(on: bool) -> Display {
        Display {
            on,
            tty: std::io::stderr().is_terminal(),
            blobs: Vec::new(),
            drawn: 0,
        }
    }

    /// Show a step of the pull.
    pub fn show(&mut self, p: Progress) {
        if !self.on {
            return;
        }
        let short = |d: &str| {
            d.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>()
        };
        match p {
            Progress::Resolved { digest, blobs } => {
                eprintln!("image {digest}: {} blob(s)", blobs.len());
                self.blobs = blobs
                    .into_iter()
                    .map(|(d, s)| (d, s, 0, "waiting"))
                    .collect();
            }
            Progress::Cached { digest } => {
                self.set(&digest, None, "exists");
                if !self.tty {
                    eprintln!("{}: already in the store", short(&digest));
                }
            }
            Progress::Fetching { digest, done } => self.set(&digest, Some(done), "fetching"),
            Progress::Fetched { digest } => {
                let size = self.blobs.iter().find(|b| b.0 == digest).map_or(0, |b| b.1);
                self.set(&digest, Some(size), "done");
                if !self.tty {
                    eprintln!("{}: fetched {}", short(&digest), human(size));
                }
            }
            Progress::Unpacking => {
                if !self.tty {
                    eprintln!("unpacking");
                }
            }
        }
        if self.tty {
            self.draw();
        }
    }

    fn set(&mut self, digest: &str, done: Option<u64>, state: &'static str) {
        if let Some(b) = self.blobs.iter_mut().find(|b| b.0 == digest) {
            if let Some(done) = done {
                b.2 = done;
            }
            if state == "exists" {
                b.2 = b.1;
            }
            b.3 = state;
        }
    }

    fn draw(&mut self) {
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        let (mut done, mut total) = (0, 0);
        for (digest, size, got, state) in &self.blobs {
            let short: String = digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            out.push_str(&format!(
                "\x1b[2K{short}  {state:<8} {:>10} / {}\n",
                human(*got),
                human(*size)
            ));
            done += got;
            total += size;
        }
        out.push_str(&format!(
            "\x1b[2Ktotal              {:>10} / {}\n",
            human(done),
            human(total)
        ));
        self.drawn = self.blobs.len() + 1;
        let _ = std::io::stderr().write_all(out.as_bytes());
    }

    /// The pull ended.
    pub fn end(&mut self) {}
}

/// Arguments of `peapod login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The registry (`host[:port]`, `docker.io`).
    pub registry: String,
    /// The user name.
    #[arg(short, long)]
    pub username: String,
    /// The password (visible to other users in the process list: prefer
    /// --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

/// Run `peapod login`: check the credentials with the registry, then store
/// them.
pub fn login(args: LoginArgs) -> Result<ExitCode, Failure> {
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .take(64 << 10)
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(anyhow!("cannot read the password from stdin: {e}")))?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => {
            return Err(Failure::Usage(anyhow!(
                "give the password with --password-stdin (or -p)"
            )))
        }
    };
    let registry_name = normalize_registry(&args.registry);
    let opts = args.registry_args.options().map_err(Failure::Usage)?;
    registry::check_login(&registry_name, &args.username, &password, &opts)
        .map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    let file = auth::write_target(args.registry_args.authfile.as_deref())
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    auth::store(&file, &registry_name, &args.username, &password)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    eprintln!("Login Succeeded (credentials in {})", file.display());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `peapod logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry.
    pub registry: String,
    /// The credentials file (default: where `peapod login` writes).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

/// Run `peapod logout`.
pub fn logout(args: LogoutArgs) -> Result<ExitCode, Failure> {
    let registry_name = normalize_registry(&args.registry);
    let file =
        auth::write_target(args.authfile.as_deref()).map_err(|e| Failure::Usage(anyhow!(e)))?;
    if auth::remove(&file, &registry_name).map_err(|e| Failure::Usage(anyhow!(e)))? {
        eprintln!(
            "Removed login credentials for {registry_name} from {}",
            file.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::Usage(anyhow!(
            "not logged in to {registry_name} (no entry in {})",
            file.display()
        )))
    }
}

/// `https://index.docker.io/v1/`, `index.docker.io` -> `docker.io`; a
/// URL's scheme and path go.
fn normalize_registry(text: &str) -> String {
    let host = text
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_normalize_registry_and_human() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("localhost:5000"), "localhost:5000");
        assert_eq!(
            normalize_registry("http://127.0.0.1:5000/v2/"),
            "127.0.0.1:5000"
        );
        assert_eq!(human(12), "12 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
