//! How a traversal runs its parallel passes: on the calling thread, through rayon
//! fork/join, or on a *team* of persistent workers that stay awake between passes.
//!
//! Why a team. A traversal runs a few parallel passes per pick (the center–center
//! distances, then per refresh round: list the stale members, refresh them, apply),
//! thousands of passes per call, most of them a few tens of µs of work. Through rayon
//! each pass is a fork/join whose helper has usually gone to sleep in the serial gap
//! before it (rayon's workers sleep after a few dozen idle rounds), so every pass pays
//! a futex wake-up and the helper joins late: 2 threads were 1.4–1.7× one on
//! 1M × 512, budget 3000, while the distance loop alone scales 2.0×. The team's helpers
//! are started once per traversal (one rayon job each, so they run on the call's own
//! pool) and stay awake between passes for up to [`SPIN`] (spinning briefly, then
//! yielding their core) and only then park; a pass is published with one atomic store
//! and taken up within about a microsecond.
//!
//! Determinism. A pass is a loop over unit indices `0..n`; units are claimed in
//! blocks from one counter, in whatever order the threads get to them, and each unit
//! writes only its own output slot, so the outputs do not depend on which thread ran
//! which unit, nor on the number of threads.
//!
//! Protocol (one leader, the traversal's thread; `helpers` workers). The leader
//! publishes a pass (task pointer, unit count) and then bumps `epoch`; a helper that
//! sees a new epoch registers in `inflight` and runs units only if that epoch is still
//! the current one and not yet `closed` (sequentially consistent, so either the leader
//! sees the registration or the helper sees the close). The leader runs units too;
//! once every unit is claimed it closes the epoch and waits until `inflight` is 0, and
//! only then returns, so the task (borrowed from the leader's stack) outlives every
//! use. A panic in a unit is caught in the helper and re-raised by the leader.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long an idle helper stays awake before it parks. Longer than the serial gaps
/// between the passes of one pick (tens of µs), short enough not to burn a core
/// between calls.
pub(super) const SPIN: Duration = Duration::from_micros(200);

/// Busy-wait iterations before a waiting thread starts yielding its core. A pass is
/// usually taken up (or finished) within these; past them, yielding costs a quiet
/// machine ~1 µs of latency, and on a loaded one lets the other processes run instead
/// of a spinning thread, which the scheduler would otherwise preempt more often, also
/// in the middle of a unit the leader then waits for.
const SPINS_BEFORE_YIELD: u32 = 256;

/// Claims per thread a pass is cut into at most (units are claimed in blocks, so a
/// pass of 100k tiny units does not bounce the counter's cache line 100k times).
const CLAIMS_PER_THREAD: usize = 16;

type Task<'a> = dyn Fn(usize) + Sync + 'a;

/// The pass being run: the task (lifetime erased; see the module doc for why it
/// outlives every use) and the number of units, plus the block size of one claim.
struct Pass {
    task: *const Task<'static>,
    n: usize,
    grain: usize,
}

/// Persistent workers for one traversal. See the module doc.
pub(super) struct Team {
    helpers: usize,
    epoch: AtomicU64,
    closed: AtomicU64,
    pass: UnsafeCell<Pass>,
    next: AtomicUsize,
    inflight: AtomicUsize,
    stop: AtomicBool,
    panicked: AtomicBool,
    sleeping: AtomicUsize,
    threads: Mutex<Vec<Thread>>,
}

// SAFETY: `pass` is written only by the leader while no helper is registered in
// `inflight` for an open epoch (see `run`), and read by helpers only while they are;
// the raw task pointer is only dereferenced under the same rule, and the task is `Sync`.
unsafe impl Sync for Team {}

fn noop(_: usize) {}

impl Team {
    pub(super) fn new(helpers: usize) -> Self {
        Team {
            helpers,
            epoch: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            pass: UnsafeCell::new(Pass {
                task: &noop as &Task<'static> as *const Task<'static>,
                n: 0,
                grain: 1,
            }),
            next: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Run `task(i)` for every `i` in `0..n` on the leader and the helpers; returns
    /// once all have finished. Only the leader (one thread) may call this.
    pub(super) fn run(&self, n: usize, task: &Task<'_>) {
        let e = self.epoch.load(SeqCst) + 1;
        let grain = n.div_ceil((self.helpers + 1) * CLAIMS_PER_THREAD).max(1);
        // SAFETY: the previous epoch is closed and no helper is registered (the last
        // `run` waited for that), so no helper reads `pass` now; erasing the task's
        // lifetime is sound because this call does not return before every helper
        // that could use it has left (`Close`).
        unsafe {
            let task: *const Task<'static> = std::mem::transmute::<&Task<'_>, &Task<'static>>(task);
            *self.pass.get() = Pass { task, n, grain };
        }
        self.next.store(0, SeqCst);
        self.epoch.store(e, SeqCst);
        if self.sleeping.load(SeqCst) > 0 {
            for t in self
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                t.unpark();
            }
        }
        // Closes the epoch and waits for the helpers even if `task` panics here.
        let _close = Close {
            team: self,
            epoch: e,
        };
        self.claim_units(task, n, grain);
    }

    fn claim_units(&self, task: &Task<'_>, n: usize, grain: usize) {
        loop {
            let a = self.next.fetch_add(grain, SeqCst);
            if a >= n {
                return;
            }
            for i in a..(a + grain).min(n) {
                task(i);
            }
        }
    }

    /// A helper's loop: wait for a pass, take part in it, until [`Team::stop`].
    pub(super) fn serve(&self) {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::thread::current());
        let mut seen = 0u64;
        while let Some(e) = self.wait_past(seen) {
            seen = e;
            self.inflight.fetch_add(1, SeqCst);
            if self.closed.load(SeqCst) < e && self.epoch.load(SeqCst) == e {
                // SAFETY: registered in `inflight` while epoch `e` is open: the leader
                // neither rewrites `pass` nor returns from `run` (so the task is alive)
                // until this helper deregisters below.
                let (task, n, grain) = unsafe {
                    let p = &*self.pass.get();
                    (&*p.task, p.n, p.grain)
                };
                if catch_unwind(AssertUnwindSafe(|| self.claim_units(task, n, grain))).is_err() {
                    self.panicked.store(true, SeqCst);
                }
            }
            self.inflight.fetch_sub(1, SeqCst);
        }
    }

    /// The next epoch after `seen`, spinning for up to [`SPIN`] and then parking;
    /// `None` once the team is stopped.
    fn wait_past(&self, seen: u64) -> Option<u64> {
        let mut since = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.stop.load(SeqCst) {
                return None;
            }
            let e = self.epoch.load(SeqCst);
            if e != seen {
                return Some(e);
            }
            spins = spins.saturating_add(1);
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
                continue;
            }
            if since.elapsed() < SPIN {
                std::thread::yield_now();
                continue;
            }
            // Park: announce it, then look once more (the leader reads `sleeping`
            // after publishing, so either it unparks us or we see its epoch here).
            self.sleeping.fetch_add(1, SeqCst);
            if !self.stop.load(SeqCst) && self.epoch.load(SeqCst) == seen {
                std::thread::park_timeout(Duration::from_millis(50));
            }
            self.sleeping.fetch_sub(1, SeqCst);
            since = Instant::now();
            spins = 0;
        }
    }

    /// Let the helpers leave [`Team::serve`].
    pub(super) fn stop(&self) {
        self.stop.store(true, SeqCst);
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            t.unpark();
        }
    }
}

/// Ends a pass: close its epoch, wait for the registered helpers, re-raise a panic
/// one of them caught.
struct Close<'t> {
    team: &'t Team,
    epoch: u64,
}

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let t = self.team;
        // Every unit is claimed (or the leader is unwinding): no helper starts one now.
        t.next.store(usize::MAX / 2, SeqCst);
        t.closed.store(self.epoch, SeqCst);
        let mut spins = 0u32;
        while t.inflight.load(SeqCst) != 0 {
            spins = spins.saturating_add(1);
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if t.panicked.swap(false, SeqCst) && !std::thread::panicking() {
            panic!("a K-Center worker panicked");
        }
    }
}

/// Where a traversal's parallel passes run.
#[derive(Clone, Copy)]
pub(super) enum Exec<'t> {
    /// Every pass on the calling thread (one thread).
    Inline,
    /// rayon fork/join on the current pool (nested runs: `per_cluster`).
    Rayon,
    /// The persistent team (a top-level traversal on two or more threads).
    Team(&'t Team),
}

/// An [`Exec`] and whether passes with few units run inline anyway.
#[derive(Clone, Copy)]
pub(super) struct Par<'t> {
    pub(super) exec: Exec<'t>,
    /// Split every pass with two or more units, however small (tests: the parallel
    /// path must give what the inline one gives).
    pub(super) eager: bool,
}

impl Par<'_> {
    pub(super) const INLINE: Par<'static> = Par {
        exec: Exec::Inline,
        eager: false,
    };

    /// Whether a pass of `n` units runs in parallel; `min` is the unit count below
    /// which splitting costs more than it saves.
    fn splits(&self, n: usize, min: usize) -> bool {
        !matches!(self.exec, Exec::Inline) && n >= 2 && (self.eager || n >= min)
    }

    /// `task(i)` for every `i` in `0..n`; in parallel when `n >= min` (see `splits`).
    pub(super) fn for_each(&self, n: usize, min: usize, task: &Task<'_>) {
        if !self.splits(n, min) {
            (0..n).for_each(task);
            return;
        }
        match self.exec {
            Exec::Inline => (0..n).for_each(task),
            Exec::Rayon => (0..n).into_par_iter().for_each(task),
            Exec::Team(team) => team.run(n, task),
        }
    }

    /// `[f(0), …, f(n − 1)]`, computed like [`Par::for_each`].
    pub(super) fn map<T: Send>(
        &self,
        n: usize,
        min: usize,
        f: impl Fn(usize) -> T + Sync,
    ) -> Vec<T> {
        if !self.splits(n, min) {
            return (0..n).map(f).collect();
        }
        let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
        self.for_each(n, min, &|i| {
            let v = f(i);
            *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        });
        slots
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("every unit of a pass runs")
            })
            .collect()
    }
}

/// Run `body` with the best [`Par`] for a top-level traversal on the current rayon
/// pool: a team of persistent helpers when it has two or more threads (capped at the
/// CPUs available: a spinning helper on an oversubscribed core would only slow the
/// leader), else inline.
pub(super) fn with_team<R>(eager: bool, body: impl FnOnce(Par<'_>) -> R) -> R {
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let helpers = rayon::current_num_threads().min(cpus).saturating_sub(1);
    if helpers == 0 {
        return body(Par {
            eager,
            ..Par::INLINE
        });
    }
    let team = Team::new(helpers);
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| team.serve());
        }
        // Stops the helpers however `body` ends (they must leave before the scope can).
        struct Stop<'t>(&'t Team);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.stop();
            }
        }
        let _stop = Stop(&team);
        body(Par {
            exec: Exec::Team(&team),
            eager,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_unit_runs_once_in_every_mode() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            with_team(true, |par| {
                for n in [0usize, 1, 2, 7, 1000, 100_000] {
                    let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                    par.for_each(n, 1, &|i| {
                        hits[i].fetch_add(1, SeqCst);
                    });
                    assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "n={n}");
                    let got = par.map(n, 1, |i| 3 * i);
                    assert_eq!(got, (0..n).map(|i| 3 * i).collect::<Vec<_>>());
                }
            });
            for exec in [Exec::Inline, Exec::Rayon] {
                let par = Par { exec, eager: true };
                assert_eq!(par.map(50, 1, |i| i + 1), (1..51).collect::<Vec<_>>());
            }
        });
    }

    #[test]
    fn a_panicking_unit_reaches_the_leader_and_the_team_recovers() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            with_team(true, |par| {
                for round in 0..3 {
                    let out = catch_unwind(AssertUnwindSafe(|| {
                        par.for_each(64, 1, &|i| {
                            if i == 40 + round {
                                panic!("unit {i}");
                            }
                        })
                    }));
                    assert!(out.is_err());
                    // The next pass runs normally.
                    assert_eq!(par.map(10, 1, |i| i).len(), 10);
                }
            });
        });
    }

    #[test]
    fn helpers_that_parked_wake_for_the_next_pass() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            with_team(true, |par| {
                for _ in 0..3 {
                    std::thread::sleep(SPIN * 3);
                    let total = AtomicUsize::new(0);
                    par.for_each(1000, 1, &|i| {
                        total.fetch_add(i, SeqCst);
                    });
                    assert_eq!(total.load(SeqCst), 999 * 1000 / 2);
                }
            });
        });
    }
}
