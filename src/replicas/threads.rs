//! Helpers on native threads (`--cpu-replicas N`): each thread holds its own replica on the
//! CPU device and answers jobs sent over a channel. The same arithmetic as the page's workers,
//! so the CLI scales across cores the same way and the tests check the split natively.

use std::cell::{Cell, RefCell};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;
use std::time::Instant;

use burn::prelude::*;

use super::replica::Helper;
use super::{Answer, Gathered, Helpers, Job};

fn clock() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

struct Thread {
    jobs: Sender<Job>,
    answers: Receiver<Result<Answer, String>>,
}

/// Helper threads, each with its own replica.
pub struct ThreadHelpers {
    alive: RefCell<Vec<Thread>>,
    /// How many jobs the last `send` handed out (to the first helpers alive), and which of
    /// them could not be delivered.
    sent: RefCell<Vec<bool>>,
    /// Test hook: the first helper dies at this step, its job lost.
    kill_at: Cell<Option<usize>>,
    retired: RefCell<Vec<String>>,
    configured: RefCell<Option<String>>,
}

impl ThreadHelpers {
    /// `n` helper threads computing on `device` (the CPU).
    pub fn start(n: usize, device: &Device) -> Self {
        let alive = (0..n)
            .filter_map(|i| {
                let (jobs, job_rx) = channel::<Job>();
                let (answer_tx, answers) = channel();
                let device = device.clone();
                std::thread::Builder::new()
                    .name(format!("replica-{}", i + 1))
                    .spawn(move || {
                        crate::ctors::run_once();
                        let mut helper = Helper::new(device, clock);
                        while let Ok(job) = job_rx.recv() {
                            if answer_tx.send(pollster::block_on(helper.handle(job))).is_err() {
                                break;
                            }
                        }
                    })
                    .ok()?;
                Some(Thread { jobs, answers })
            })
            .collect();
        Self { alive: RefCell::new(alive), sent: RefCell::new(Vec::new()), kill_at: Cell::new(None), retired: RefCell::new(Vec::new()), configured: RefCell::new(None) }
    }

    /// Test hook: the first helper dies while it holds its slice of step `step`.
    pub fn kill_at_step(&self, step: usize) {
        self.kill_at.set(Some(step));
    }

    /// Helpers retired so far, with why.
    pub fn retired(&self) -> Vec<String> {
        self.retired.borrow().clone()
    }
}

impl Helpers for ThreadHelpers {
    fn count(&self) -> usize {
        self.alive.borrow().len()
    }

    fn send(&self, jobs: Vec<Job>) {
        let alive = self.alive.borrow();
        *self.sent.borrow_mut() = jobs.into_iter().zip(alive.iter()).map(|(job, t)| t.jobs.send(job).is_ok()).collect();
    }

    fn gather(&self) -> Gathered<'_> {
        Box::pin(async move {
            let sent = std::mem::take(&mut *self.sent.borrow_mut());
            let mut dead = Vec::new();
            let answers = {
                let alive = self.alive.borrow();
                sent.iter()
                    .enumerate()
                    .map(|(i, &delivered)| {
                        let answer = match delivered {
                            true => alive[i].answers.recv().map_err(|_| "the helper thread ended".to_string()).and_then(|a| a),
                            false => Err("the helper thread ended before its job".to_string()),
                        };
                        if let Err(e) = &answer {
                            dead.push((i, e.clone()));
                        }
                        answer
                    })
                    .collect()
            };
            let mut alive = self.alive.borrow_mut();
            for (i, why) in dead.into_iter().rev() {
                alive.remove(i);
                self.retired.borrow_mut().push(why);
            }
            answers
        })
    }

    fn configured(&self) -> Option<String> {
        self.configured.borrow().clone()
    }

    fn set_configured(&self, key: String) {
        *self.configured.borrow_mut() = Some(key);
    }

    fn at_step(&self, step: usize) {
        if self.kill_at.get() == Some(step) {
            self.kill_at.set(None);
            let mut alive = self.alive.borrow_mut();
            if !alive.is_empty() {
                // Its channels close: the thread ends and the job sent to it is never answered.
                let (jobs, _) = channel();
                alive[0].jobs = jobs;
            }
        }
    }
}
