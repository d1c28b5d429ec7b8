//! `imagePullPolicy`: which of a pod's registry images are pulled before it
//! starts, as the kubelet decides.
//!
//! - `Never`: the image must be in the store.
//! - `IfNotPresent`: pulled when the store does not have it (the default for
//!   a tagged image, and for one pinned by digest).
//! - `Always`: pulled every time (the default for `:latest` and untagged
//!   names); when the registry cannot be reached, a copy in the store is
//!   used, with a warning.
//!
//! An image the store got from an archive (`peapod image load`) is the
//! user's own: it is not replaced by a default pull, only by an explicit
//! `imagePullPolicy: Always`, and a pull of it that fails (the registry
//! does not have it) runs the loaded copy, with a warning.

use std::collections::HashSet;

use crate::image::registry::{self, PullOptions};
use crate::image::{ImageError, ImageRef, ImageStore};
use crate::spec::{PodPlan, PullPolicy};

/// The policy a container's image gets when the pod says none.
fn default_policy(image: &ImageRef, loaded: bool) -> PullPolicy {
    match image {
        ImageRef::Named {
            tag, digest: None, ..
        } if !loaded && tag.as_deref().is_none_or(|t| t == "latest") => PullPolicy::Always,
        _ => PullPolicy::IfNotPresent,
    }
}

/// Pull what the pod's containers need; an error names the field.
pub fn ensure_images(plan: &PodPlan, store: &ImageStore, opts: &PullOptions) -> Result<(), String> {
    let mut done = HashSet::new();
    let all = plan
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c))
        .chain(
            plan.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("spec.containers[{i}]"), c)),
        );
    for (field, c) in all {
        let ImageRef::Named { .. } = &c.image else {
            continue;
        };
        let present = store.has_image(&c.image);
        let loaded = present && !store.image_origin(&c.image).is_some_and(|o| o.pulled);
        let policy = c
            .image_pull_policy
            .unwrap_or_else(|| default_policy(&c.image, loaded));
        let pull = match policy {
            PullPolicy::Never if present => false,
            PullPolicy::Never => {
                return Err(format!(
                    "{field}.image: {} is not in the local store, and imagePullPolicy is Never; \
                     pull it with `peapod pull {}` (or load it with `peapod image load`)",
                    c.image, c.image
                ))
            }
            PullPolicy::IfNotPresent => !present,
            PullPolicy::Always => true,
        };
        // One pull per image, whatever the number of containers using it.
        if !pull || !done.insert(c.image.to_string()) {
            continue;
        }
        eprintln!("pulling {}", c.image);
        match registry::pull(store, &c.image, opts, &mut |_| {}) {
            Ok(p) => eprintln!(
                "pulled {} ({}; {} blob(s) fetched, {} bytes)",
                c.image, p.digest, p.fetched_blobs, p.fetched_bytes
            ),
            // The registry is out of reach: the stored copy runs.
            Err(ImageError::Pull {
                problem,
                unreachable: true,
                ..
            }) if present => {
                log::warn!("{field}.image: {problem}; running the copy in the local store");
            }
            // The user's own image, loaded from an archive: a registry that
            // does not have it does not stop the pod.
            Err(e) if loaded => {
                log::warn!("{field}.image: {e}; running the copy loaded from an archive");
            }
            Err(e) if present => return Err(format!("{field}.image: {e}")),
            Err(e) => {
                return Err(format!(
                    "{field}.image: {e} (an image from an archive is loaded with `peapod image \
                     load FILE`)"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_pull_policy_is_the_kubelets() {
        let p = |text: &str, loaded| default_policy(&text.parse().unwrap(), loaded);
        assert_eq!(p("nginx", false), PullPolicy::Always);
        assert_eq!(p("nginx:latest", false), PullPolicy::Always);
        assert_eq!(p("nginx:1.27", false), PullPolicy::IfNotPresent);
        let pinned = format!("nginx@sha256:{}", "a".repeat(64));
        assert_eq!(p(&pinned, false), PullPolicy::IfNotPresent);
        // An image loaded from an archive is not pulled over by default.
        assert_eq!(p("busybox:latest", true), PullPolicy::IfNotPresent);
    }
}
