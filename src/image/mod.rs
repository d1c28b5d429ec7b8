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
mod store;
#[cfg(test)]
mod testutil;

pub use error::ImageError;
pub use reference::ImageRef;
pub use store::{ImageConfig, ImageStore, ResolvedImage};
