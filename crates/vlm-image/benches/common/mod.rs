//! Setup shared by the image benches.

pub mod jpegs;
