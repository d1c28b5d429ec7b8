//! Container images: references now; fetching and unpacking later.

pub mod reference;
