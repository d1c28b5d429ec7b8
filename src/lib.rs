//! peapod
