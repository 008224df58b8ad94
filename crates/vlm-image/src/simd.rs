//! Runtime CPU dispatch for the pixel kernels (today: the resampling passes).
//!
//! The kernels are plain integer Rust written so that LLVM vectorises them. The portable build
//! targets baseline x86-64 (SSE2, which has no 32-bit vector multiply), so [`kernel!`] compiles
//! each kernel a second time with AVX2 and picks that build when the CPU has it. Integer
//! arithmetic makes both builds produce identical bytes.

/// Defines `fn name(args) -> ret { body }` whose body is compiled twice, for baseline x86-64 and
/// for AVX2, choosing at run time (other architectures: one portable build).
macro_rules! kernel {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use kernel;
