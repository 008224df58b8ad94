//! Keeping freed memory in the process heap while training (glibc's malloc).
//!
//! A training step allocates and frees the same activation, gradient and optimizer buffers
//! every step. By default glibc's malloc gives the top of its heap back to the operating system
//! when a large block at the top is freed (and adjusts its thresholds as blocks come and go),
//! so the next step faults the same pages in again: 385 K minor page faults and 0.93 s of
//! system time for 5 steps of the bench config. With the heap kept (no trimming, 100 MB of
//! padding when it grows, blocks up to 32 MiB, the most glibc allows, served from the heap):
//! 192 K faults, 0.57 s, and a step ~8 % faster (BENCHMARKS.md, round 4). The process keeps
//! its peak heap until it exits, as training processes do with jemalloc or tcmalloc.

/// Largest block served from the heap rather than a fresh mapping (glibc's upper limit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Extra bytes requested whenever the heap grows.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: i32 = 100 << 20;

/// Sets glibc's malloc to keep freed memory for reuse (once per process; a no-op elsewhere).
pub(crate) fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: `mallopt` only changes malloc's tuning parameters; each call either
            // applies the value or returns 0 and leaves it (a tuning that did not apply only
            // costs speed).
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
                libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        });
    }
}
