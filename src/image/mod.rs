//! Container images: parsing references, and resolving them to unpacked,
//! read-only root filesystems through a content-addressed layer cache
//! ([`ImageStore`]).

mod archive;
pub mod digest;
mod error;
mod flatten;
pub mod layer;
mod name;
pub mod oci;
pub mod reference;
pub mod registry;
mod store;
#[cfg(test)]
mod testutil;

pub use error::ImageError;
pub use reference::ImageRef;
pub use store::{ImageConfig, ImageEntry, ImageStore, Origin, Pruned, ResolvedImage};
