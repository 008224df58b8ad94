//! A team of spinning threads for the short parallel loops of decoding (patched in for vlm; see
//! vendor/burn-flex/PATCH.md).
//!
//! A batch-1 decode step is about sixty weight products of 0.1-4 MB, each a few tens of
//! microseconds long and separated by small serial ops. Handing each to rayon from the caller's
//! thread (not a rayon worker) costs more than splitting saves: the job is injected into the
//! pool, a sleeping worker is woken through a futex, and the caller sleeps on a lock until it is
//! woken back, ~25 µs per product on the development VM. The team's threads instead spin on an
//! atomic for a while after each job (as the OpenMP threads behind PyTorch do), so handing out
//! a part costs a store and a few cache misses; after [`SPIN`] without work they park.
//!
//! The team has `rayon::current_num_threads() - 1` threads (so `RAYON_NUM_THREADS` still sets
//! how many cores a run uses), made at the first call. One caller at a time uses it: a second
//! concurrent caller runs its parts itself, one after the other.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a team thread spins for its next part before it parks.
const SPIN: Duration = Duration::from_millis(1);

/// A part of a job as the team threads see it; its lifetime is erased, see [`Team::run`].
type Part = *const (dyn Fn(usize) + Sync);

/// The job being run, shared with the team threads.
struct Shared {
    /// Counts jobs; a team thread starts a job when it sees the count change.
    epoch: AtomicUsize,
    /// Team threads not finished yet with the current job.
    pending: AtomicUsize,
    /// The current job (valid while `pending` is not 0).
    job: Mutex<Option<Job>>,
    /// A panic of a team thread in the current job, resumed on the caller.
    panic: Mutex<Option<Box<dyn core::any::Any + Send>>>,
    /// Per team thread: parked, or about to park (the caller then unparks it).
    parked: Vec<AtomicBool>,
}

/// A job: `part(i)` for `i < parts`.
struct Job {
    part: Part,
    parts: usize,
}

// SAFETY: the part is `Sync`, and `Team::run` keeps it alive until every team thread is done
// with it.
unsafe impl Send for Job {}

/// The team: its shared state, its threads, and the lock that admits one caller at a time.
struct Team {
    shared: &'static Shared,
    threads: Vec<Thread>,
    caller: Mutex<()>,
}

/// Runs `part(i)` for every `i < parts`: part 0 on the calling thread, the others on the
/// team's threads, and returns when all are done (a panic in any part is resumed here).
///
/// Parts past [`parallelism`] run on the caller after its own, one after the other.
pub(crate) fn run(parts: usize, part: &(dyn Fn(usize) + Sync)) {
    let team = team();
    let together = parts.min(team.threads.len() + 1);
    if together < 2 {
        return (0..parts).for_each(part);
    }
    let _caller = match team.caller.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return (0..parts).for_each(part),
    };
    team.run(together, part);
    (together..parts).for_each(part);
}

/// `part(i)` for every `i < parts`, run as [`run`] does, in order.
pub(crate) fn map<T: Send>(parts: usize, part: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<Mutex<Option<T>>> = (0..parts).map(|_| Mutex::new(None)).collect();
    run(parts, &|i| *lock(&slots[i]) = Some(part(i)));
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .expect("every part ran")
        })
        .collect()
}

/// `block(i, chunk)` for the chunks of `width` elements of `out` (the last may be shorter),
/// run as [`run`] does.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    width: usize,
    block: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunks: Vec<Mutex<&mut [T]>> = out.chunks_mut(width).map(Mutex::new).collect();
    run(chunks.len(), &|i| block(i, &mut lock(&chunks[i])));
}

/// How many parts [`run`] runs at the same time: the calling thread and the team's threads.
pub(crate) fn parallelism() -> usize {
    team().threads.len() + 1
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let size = rayon::current_num_threads().saturating_sub(1);
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            epoch: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            job: Mutex::new(None),
            panic: Mutex::new(None),
            parked: (0..size).map(|_| AtomicBool::new(false)).collect(),
        }));
        let threads = (0..size)
            .map(|index| {
                std::thread::Builder::new()
                    .name(alloc::format!("flex-team-{}", index + 1))
                    .spawn(move || team_thread(shared, index))
                    .map(|handle| handle.thread().clone())
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        Team {
            shared,
            threads,
            caller: Mutex::new(()),
        }
    })
}

impl Team {
    /// Runs part 0 and gives parts `1..parts` to the team threads (which all take the job;
    /// those past `parts` only report back), then waits for them.
    fn run(&self, parts: usize, part: &(dyn Fn(usize) + Sync)) {
        let shared = self.shared;
        // SAFETY: only the lifetime is erased; `Wait` below keeps this frame (and `part`) alive
        // until every team thread has finished its part, even when part 0 panics.
        let erased: Part = unsafe {
            core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(
                part,
            )
        };
        // A team thread's panic left over from a job whose part 0 panicked as well.
        lock(&shared.panic).take();
        *lock(&shared.job) = Some(Job {
            part: erased,
            parts,
        });
        shared.pending.store(self.threads.len(), Ordering::SeqCst);
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        for (thread, parked) in self.threads.iter().zip(&shared.parked) {
            if parked.swap(false, Ordering::SeqCst) {
                thread.unpark();
            }
        }
        let wait = Wait(shared);
        part(0);
        drop(wait);
        if let Some(payload) = lock(&shared.panic).take() {
            resume_unwind(payload);
        }
    }
}

/// Waits, when dropped, until the team threads have finished the current job.
struct Wait(&'static Shared);

/// Spins of a waiting caller between yields of its core (to a team thread that the OS has not
/// scheduled, on a machine with more busy threads than cores).
const SPINS_PER_YIELD: u32 = 1 << 12;

impl Drop for Wait {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.0.pending.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_YIELD == 0 {
                std::thread::yield_now();
            }
        }
    }
}

/// Team thread `index` (part `index + 1` of each job it takes part in): spins for the next
/// job, parks after [`SPIN`] without one.
fn team_thread(shared: &'static Shared, index: usize) {
    let mut seen = 0;
    loop {
        seen = next_job(shared, index, seen);
        let job = lock(&shared.job).as_ref().map(|job| (job.part, job.parts));
        if let Some((part, _)) = job.filter(|&(_, parts)| index + 1 < parts) {
            // SAFETY: `Team::run` keeps the part alive until `pending` reaches 0.
            let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*part)(index + 1) }));
            if let Err(payload) = result {
                *lock(&shared.panic) = Some(payload);
            }
        }
        shared.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Spins (then parks) until the job count differs from `seen`; returns the new count.
fn next_job(shared: &Shared, index: usize, seen: usize) -> usize {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let epoch = shared.epoch.load(Ordering::Acquire);
        if epoch != seen {
            return epoch;
        }
        core::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % 256 == 0 && start.elapsed() > SPIN {
            shared.parked[index].store(true, Ordering::SeqCst);
            if shared.epoch.load(Ordering::SeqCst) == seen {
                std::thread::park();
            }
            shared.parked[index].store(false, Ordering::SeqCst);
        }
    }
}

/// Locks `mutex`, taking the value of a poisoned one (a panic is resumed on the caller, and
/// the slots hold plain values).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
