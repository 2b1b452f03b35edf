//! The page's state: reactive signals for what is shown, and what it keeps to draw the
//! engine's data (the engine's own objects live in `engine.rs`, usually in a worker).

use std::cell::RefCell;

use leptos::prelude::*;

use crate::web::protocol::{ComputeView, GpuUnavailable, Phase, Place, Progress, StartOptions};
use crate::augment::Normalization;
use crate::bench::StepBench;
use crate::data::Split;
use crate::metrics::{BatchStats, EpochStats, Evaluation};
use crate::schedule::OneCycle;

/// What the page keeps of the engine's data to draw it: class names, the normalisation, the
/// preview's train images and the gallery's mistakes (the data set itself stays with the
/// engine).
#[derive(Default)]
pub struct Shown {
    pub class_names: Vec<String>,
    pub norm: Option<Normalization>,
    /// The preview's first train images.
    pub sample: Split,
    /// The images of the evaluation's first mistakes, in order.
    pub mistakes: Vec<u8>,
    /// What the page sees of the device that trains (`ComputeView::device_key`), for the
    /// remembered convolution choices.
    pub device_key: String,
    /// Convolution choices made this session, by key (also in localStorage, which a browser
    /// may refuse): the algorithm's name and the line that explains it.
    pub conv_choices: std::collections::HashMap<String, (String, String)>,
    /// The page's own counters at the benchmark's two readings (engine in a worker).
    pub probe_marks: Vec<Vec<crate::train::Probe>>,
}

thread_local! {
    static SHOWN: RefCell<Shown> = RefCell::new(Shown::default());
}

/// Runs `f` with what the page keeps to draw (never across an `.await`).
pub fn with_shown<R>(f: impl FnOnce(&mut Shown) -> R) -> R {
    SHOWN.with(|s| f(&mut s.borrow_mut()))
}

/// Every signal the page reads. `Copy`, so components take it by value.
#[derive(Clone, Copy)]
pub struct Ui {
    /// WebGPU's status line, or why it is not used.
    pub gpu: RwSignal<Option<Result<String, GpuUnavailable>>>,
    /// The device training runs on (`data-testid="compute-device"`).
    pub compute: RwSignal<Option<ComputeView>>,
    /// The batch's micro-batches when it exceeds the binding limit (`data-testid="micro-batch"`).
    pub split: RwSignal<Option<String>>,
    /// The self-test line: passed, and what it says.
    pub selftest: RwSignal<Option<(bool, String)>>,
    /// The link's settings the engine acts on (sent with `Command::Start`).
    pub options: RwSignal<StartOptions>,
    /// `?worker=0`: the engine on the page's thread.
    pub worker: RwSignal<bool>,
    /// Where the engine runs, and why (`data-testid="engine-thread"`).
    pub engine_thread: RwSignal<String>,
    /// Pause was clicked and the engine has not yet paused (it finishes the step it is in).
    pub pausing: RwSignal<bool>,
    pub data_status: RwSignal<Option<String>>,
    pub data_error: RwSignal<Option<String>>,
    pub progress: RwSignal<Option<Progress>>,
    pub data_version: RwSignal<u32>,
    pub form: RwSignal<Vec<(String, String)>>,
    /// The One-Cycle peak was set by the link (`?peak_epoch=`) or typed by the visitor; until
    /// then it moves with the epochs, as the recipe's epoch 5 of 24 does.
    pub peak_set: RwSignal<bool>,
    pub form_errors: RwSignal<Vec<(String, String)>>,
    pub data_url: RwSignal<String>,
    pub data_files: RwSignal<Vec<String>>,
    pub lr_steps: RwSignal<usize>,
    pub phase: RwSignal<Phase>,
    /// The Train card's message (training, benchmark).
    pub message: RwSignal<Option<(bool, String)>>,
    /// Messages shown in the other cards, next to the control the user acted on.
    pub data_message: RwSignal<Option<(bool, String)>>,
    pub lr_message: RwSignal<Option<(bool, String)>>,
    pub weights_message: RwSignal<Option<(bool, String)>>,
    pub schedule: RwSignal<Option<OneCycle>>,
    pub steps_per_epoch: RwSignal<usize>,
    pub total_epochs: RwSignal<usize>,
    /// Whether the run uses Lookahead (its decay is drawn on the schedule chart).
    pub lookahead: RwSignal<bool>,
    pub batches: RwSignal<Vec<BatchStats>>,
    pub epochs: RwSignal<Vec<EpochStats>>,
    pub evaluation: RwSignal<Option<Evaluation>>,
    pub lr_points: RwSignal<Vec<(f64, f32)>>,
    pub lr_suggestion: RwSignal<Option<f64>>,
    pub exportable: RwSignal<bool>,
    pub predict: RwSignal<Option<Result<String, String>>>,
    /// The last step benchmark, or why it failed.
    pub bench: RwSignal<Option<Result<StepBench, String>>>,
    /// Timed steps of the benchmark (`?bench_steps=`).
    pub bench_steps: RwSignal<usize>,
    /// Whether the convolution algorithm is timed on this GPU (`?conv=auto` or no `conv`) rather
    /// than set by the link.
    pub conv_auto: RwSignal<bool>,
    /// How the convolutions are computed and why (`data-testid="conv-choice"`).
    pub conv_choice: RwSignal<String>,
    /// Why the GPU device was lost, while it is (offers "Continue on a new device").
    pub device_lost: RwSignal<Option<String>>,
}

impl Ui {
    pub fn new() -> Self {
        Self {
            gpu: RwSignal::new(None),
            compute: RwSignal::new(None),
            split: RwSignal::new(None),
            selftest: RwSignal::new(None),
            options: RwSignal::new(Default::default()),
            worker: RwSignal::new(true),
            engine_thread: RwSignal::new("Engine: starting…".into()),
            pausing: RwSignal::new(false),
            data_status: RwSignal::new(None),
            data_error: RwSignal::new(None),
            progress: RwSignal::new(None),
            data_version: RwSignal::new(0),
            form: RwSignal::new(Vec::new()),
            peak_set: RwSignal::new(false),
            form_errors: RwSignal::new(Vec::new()),
            data_url: RwSignal::new("data/cifar-10-batches-bin/".into()),
            data_files: RwSignal::new(crate::data::official_files()),
            lr_steps: RwSignal::new(200),
            phase: RwSignal::new(Phase::Idle),
            message: RwSignal::new(None),
            data_message: RwSignal::new(None),
            lr_message: RwSignal::new(None),
            weights_message: RwSignal::new(None),
            schedule: RwSignal::new(None),
            steps_per_epoch: RwSignal::new(0),
            total_epochs: RwSignal::new(0),
            lookahead: RwSignal::new(false),
            batches: RwSignal::new(Vec::new()),
            epochs: RwSignal::new(Vec::new()),
            evaluation: RwSignal::new(None),
            lr_points: RwSignal::new(Vec::new()),
            lr_suggestion: RwSignal::new(None),
            exportable: RwSignal::new(false),
            predict: RwSignal::new(None),
            bench: RwSignal::new(None),
            bench_steps: RwSignal::new(20),
            conv_auto: RwSignal::new(true),
            conv_choice: RwSignal::new("Convolutions: the fastest on this GPU, timed when you train or benchmark".into()),
            device_lost: RwSignal::new(None),
        }
    }

    /// Whether a run, the LR finder or the benchmark is using the GPU.
    pub fn busy(&self) -> bool {
        matches!(self.phase.get(), Phase::Running | Phase::Paused | Phase::FindingLr | Phase::Benchmarking)
    }

    /// Shows an error (`true`) or information line in the Train card.
    pub fn say(&self, error: bool, text: impl Into<String>) {
        self.say_in(Place::Train, error, text);
    }

    /// Shows an error (`true`) or information line in the card of `place`, where the user
    /// acted, not in a card that may be off screen.
    pub fn say_in(&self, place: Place, error: bool, text: impl Into<String>) {
        let signal = match place {
            Place::Data => self.data_message,
            Place::LrFinder => self.lr_message,
            Place::Train => self.message,
            Place::Weights => self.weights_message,
        };
        signal.set(Some((error, text.into())));
    }
}

impl Ui {
    /// Clears the message line of the card of `place`.
    pub fn clear(&self, place: Place) {
        match place {
            Place::Data => self.data_message,
            Place::LrFinder => self.lr_message,
            Place::Train => self.message,
            Place::Weights => self.weights_message,
        }
        .set(None);
    }
}

impl Default for Ui {
    fn default() -> Self {
        Self::new()
    }
}
