//! Port I/O devices: the 16550 console and the i8042 reset line.

pub mod console;
pub mod i8042;
pub mod serial;
