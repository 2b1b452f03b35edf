//! Static constructors run once per wasm instance, not once per call into it.
//!
//! Some dependencies register themselves from static constructors (`inventory`, used by
//! cubecl-ir's pliron dialects, puts them in `.init_array` on every wasm target). wasm-ld makes
//! a module "command style" when nothing in it refers to `__wasm_call_ctors`: it then wraps
//! **every export** so that it runs all constructors first (`{name}.command_export`). A page
//! calls into the wasm thousands of times per training step (every bind group, every closure,
//! every externref slot), so each call re-ran cubecl's registrations: ~62% of the page's CPU
//! per step (issue 21's profile). Referring to `__wasm_call_ctors` here turns the wrapping
//! off; [`run_once`] then runs the constructors exactly once, at start-up. Natively the loader
//! runs `.init_array` itself and [`run_once`] does nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(target_family = "wasm")]
unsafe extern "C" {
    /// Synthesised by wasm-ld: calls every `.init_array` entry of the module.
    fn __wasm_call_ctors();
}

static DONE: AtomicBool = AtomicBool::new(false);

/// Runs the module's static constructors unless they already ran. Call it before anything
/// else in every entry point (the page's `start`, the browser tests, a worker).
pub fn run_once() {
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    #[cfg(target_family = "wasm")]
    // SAFETY: the constructors are idempotent registrations (inventory guards each node), and
    // the flag above makes this the only call from Rust.
    unsafe {
        __wasm_call_ctors()
    }
}

/// How many times the module's constructors have run: a constructor of our own counts. 1 in
/// a healthy page whatever it has done since; more means wasm-ld wrapped the exports again
/// (tests assert it after many calls into the wasm).
pub fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_run() {
    RUNS.fetch_add(1, Ordering::SeqCst);
}

/// Our own constructor, beside the dependencies' ones, so a test can count the runs.
#[cfg(any(target_family = "wasm", target_os = "linux"))]
#[used]
#[link_section = ".init_array"]
static COUNT_RUNS: extern "C" fn() = count_run;

#[cfg(test)]
mod tests {
    /// The counting constructor is linked and ran once at load; `run_once` adds no run.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_loader_ran_our_constructor_once() {
        super::run_once();
        super::run_once();
        assert_eq!(super::runs(), 1);
    }
}
