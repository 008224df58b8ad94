//! Runtime CPU dispatch for the pixel kernels (resampling passes, JPEG colour conversion).
//!
//! The kernels are plain integer Rust written so that LLVM vectorises them. The portable build
//! targets baseline x86-64 (SSE2, which has no 32-bit vector multiply), so [`kernel!`] compiles
//! each kernel again with AVX2 and with AVX-512 and picks the widest build the CPU has
//! ([`level`]). Integer arithmetic makes every build produce identical bytes.

/// An instruction-set level a kernel is compiled for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Level {
    Portable,
    Avx2,
    /// AVX-512 F + BW.
    Avx512,
}

/// The widest level this CPU runs (capped by [`with_cap`] in unit tests).
pub(crate) fn level() -> Level {
    let detected = detect();
    #[cfg(test)]
    let detected = detected.min(CAP.with(std::cell::Cell::get));
    detected
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        Level::Avx512
    } else if std::arch::is_x86_feature_detected!("avx2") {
        Level::Avx2
    } else {
        Level::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Portable
}

#[cfg(test)]
thread_local! {
    static CAP: std::cell::Cell<Level> = const { std::cell::Cell::new(Level::Avx512) };
}

/// Runs `f` with the kernels of this thread limited to `cap` (unit tests compare every build).
#[cfg(test)]
pub(crate) fn with_cap<T>(cap: Level, f: impl FnOnce() -> T) -> T {
    let old = CAP.with(|c| c.replace(cap));
    let out = f();
    CAP.with(|c| c.set(old));
    out
}

/// Every level this CPU runs, narrowest first.
#[cfg(test)]
pub(crate) fn levels() -> Vec<Level> {
    [Level::Portable, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| l <= detect())
        .collect()
}

/// Defines `fn name(args) -> ret { body }` whose body is compiled for every [`Level`], running
/// the build of [`level`] (other architectures: one portable build).
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
            #[target_feature(enable = "avx512f,avx512bw")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }

            match $crate::simd::level() {
                // SAFETY: `level` found AVX-512 F + BW on this CPU.
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Level::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: `level` found AVX2 on this CPU.
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Level::Avx2 => unsafe { avx2($($arg),*) },
                _ => portable($($arg),*),
            }
        }
    };
}

pub(crate) use kernel;
