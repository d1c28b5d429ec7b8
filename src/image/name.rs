//! Docker-style image names: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`,
//! checked with the grammar of the distribution reference library and
//! normalised as Docker does (`busybox` is `docker.io/library/busybox:latest`).

use super::reference::{invalid, ImageRef, ImageRefError};

/// The registry of names without one.
const DEFAULT_REGISTRY: &str = "docker.io";

/// Longest repository name Docker accepts, registry included.
const MAX_NAME_LEN: usize = 255;

/// Parses and normalises a Docker-style `NAME[:TAG][@DIGEST]`.
pub(super) fn parse_named(input: &str) -> Result<ImageRef, ImageRefError> {
    if input.chars().any(char::is_whitespace) {
        return Err(ImageRefError::Whitespace {
            input: input.to_owned(),
        });
    }
    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (input, None),
    };
    if let Some(digest) = digest {
        check_digest(input, digest)?;
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (&rest[..colon], Some(&rest[colon + 1..]))
        }
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(input, tag)?;
    }
    if name.is_empty() {
        return Err(invalid(input, "the image name is missing"));
    }

    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            check_registry(input, first)?;
            (first, path)
        }
        _ => (DEFAULT_REGISTRY, name),
    };
    check_repository(input, path)?;
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY
    } else {
        registry
    };
    let full = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("{registry}/library/{path}")
    } else {
        format!("{registry}/{path}")
    };
    if full.len() > MAX_NAME_LEN {
        return Err(invalid(
            input,
            format!("the repository name is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let tag = match (tag, digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_owned()),
    };
    Ok(ImageRef::Named {
        name: full,
        tag,
        digest: digest.map(str::to_owned),
    })
}

/// Tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(input: &str, tag: &str) -> Result<(), ImageRefError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = tag.len() <= 128
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if valid {
        return Ok(());
    }
    let problem = if tag.is_empty() {
        "the tag after ':' is empty; remove the ':' or write a tag, e.g. busybox:1.36".to_owned()
    } else {
        format!(
            "tag {tag:?} is not valid: a tag is at most 128 letters, digits, '_', '.' and '-', \
             not starting with '.' or '-'"
        )
    };
    Err(invalid(input, problem))
}

/// Digest: `sha256:` + 64 or `sha512:` + 128 lowercase hex digits.
fn check_digest(input: &str, digest: &str) -> Result<(), ImageRefError> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let want_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(invalid(
                input,
                format!(
                    "digest {digest:?} is not valid: write sha256: followed by 64 lowercase hex \
                     digits (sha512: with 128 also works)"
                ),
            ))
        }
    };
    let is_hex = hex
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if hex.len() != want_len || !is_hex {
        return Err(invalid(
            input,
            format!(
                "digest {digest:?} is not valid: {algorithm}: must be followed by exactly \
                 {want_len} lowercase hex digits"
            ),
        ));
    }
    Ok(())
}

/// Registry: `host[:port]`, host being DNS labels joined by dots or a
/// bracketed IPv6 address.
fn check_registry(input: &str, registry: &str) -> Result<(), ImageRefError> {
    let bad = || {
        invalid(
            input,
            format!(
                "registry {registry:?} is not valid: write a host name or address with an \
                 optional port, e.g. registry.example.com:5000"
            ),
        )
    };
    let (host, port) = if let Some(bracketed) = registry.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or_else(bad)?;
        address.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Repository path: `/`-separated components of lowercase letters and
/// digits, joined inside a component by `.`, `_`, `__` or runs of `-`.
fn check_repository(input: &str, path: &str) -> Result<(), ImageRefError> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(
            input,
            format!(
                "repository name {path:?} must be lowercase (try {:?})",
                path.to_ascii_lowercase()
            ),
        ));
    }
    for component in path.split('/') {
        if !repository_component_ok(component) {
            return Err(invalid(
                input,
                format!(
                    "repository name {path:?} is not valid: each '/'-separated part must be \
                     lowercase letters and digits, joined by '.', '_', '__' or '-'"
                ),
            ));
        }
    }
    Ok(())
}

fn repository_component_ok(component: &str) -> bool {
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one or two '_', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}
