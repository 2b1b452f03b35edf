//! What training reports: per-batch and per-epoch figures and the evaluation of the test set.

use serde::{Deserialize, Serialize};

use crate::data::NUM_CLASSES;

/// Figures for the batches since the last read-back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Global optimiser step just taken (1-based count of steps done).
    pub step: usize,
    /// Batch index within the epoch (1-based count).
    pub batch: usize,
    pub batches_per_epoch: usize,
    /// Mean training loss over the batches since the last report.
    pub loss: f32,
    pub lr: f64,
    pub momentum: f64,
    /// Training throughput since the last report.
    pub images_per_sec: f64,
    /// Seconds since training started (pauses excluded).
    pub elapsed_s: f64,
}

/// One row of the log, in the seed's format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    pub lr: f64,
    pub train_time_s: f64,
    pub train_loss: f32,
    pub train_acc: f32,
    pub test_time_s: f64,
    pub test_loss: f32,
    pub test_acc: f32,
    pub total_time_s: f64,
    pub images_per_sec: f64,
    /// GPU memory held by live tensors after the epoch, in MiB (burn's pool usage; `None` on a
    /// backend that does not report it). Flat after the first epochs on a healthy run.
    #[serde(default)]
    pub gpu_mem_mib: Option<f64>,
    /// Test-time augmentation level of this epoch's evaluation (0: the image only).
    #[serde(default)]
    pub tta: usize,
}

impl EpochStats {
    /// Header of the seed's log.
    pub const HEADER: &'static str =
        "epoch        lr  train time  train loss  train acc  test time  test loss  test acc  total time     img/s";

    /// One line of the seed's log.
    pub fn log_line(&self) -> String {
        format!(
            "{:>5} {:>9.4} {:>11.2} {:>11.4} {:>10.4} {:>10.2} {:>10.4} {:>9.4} {:>11.2} {:>9.0}",
            self.epoch,
            self.lr,
            self.train_time_s,
            self.train_loss,
            self.train_acc,
            self.test_time_s,
            self.test_loss,
            self.test_acc,
            self.total_time_s,
            self.images_per_sec
        ) + &if self.tta > 0 { format!("  (test-time augmentation: {} views)", tta_views(self.tta)) } else { String::new() }
    }

    /// CSV header matching [`EpochStats::csv_line`].
    pub const CSV_HEADER: &'static str =
        "epoch,lr,train_time_s,train_loss,train_acc,test_time_s,test_loss,test_acc,total_time_s,images_per_sec,gpu_mem_mib";

    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{}",
            self.epoch,
            self.lr,
            self.train_time_s,
            self.train_loss,
            self.train_acc,
            self.test_time_s,
            self.test_loss,
            self.test_acc,
            self.total_time_s,
            self.images_per_sec,
            self.gpu_mem_mib.map(|m| format!("{m:.1}")).unwrap_or_default(),
        )
    }
}

/// A test image the net got wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mistake {
    /// Index into the test split.
    pub index: usize,
    pub label: usize,
    pub predicted: usize,
    /// Softmax probability of the predicted class.
    pub confidence: f32,
}

/// The evaluation of a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub images: usize,
    pub loss: f32,
    pub accuracy: f32,
    /// `confusion[true][predicted]` counts.
    pub confusion: [[u32; NUM_CLASSES]; NUM_CLASSES],
    /// The most confident mistakes, most confident first.
    pub mistakes: Vec<Mistake>,
    /// Total number of mistakes.
    pub wrong: usize,
}

impl Evaluation {
    pub fn new() -> Self {
        Self {
            images: 0,
            loss: 0.0,
            accuracy: 0.0,
            confusion: [[0; NUM_CLASSES]; NUM_CLASSES],
            mistakes: Vec::new(),
            wrong: 0,
        }
    }

    /// Adds the softmax probabilities `[n, 10]` (row-major) of images `first..first+n`.
    pub fn add(&mut self, probs: &[f32], labels: &[u8], first: usize, keep: usize) {
        let mut loss_sum = self.loss as f64 * self.images as f64;
        for (k, (row, &label)) in probs.chunks_exact(NUM_CLASSES).zip(labels).enumerate() {
            let (pred, &conf) = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((0, &0.0));
            let label = label as usize;
            self.confusion[label][pred] += 1;
            loss_sum -= (row[label].max(1e-12) as f64).ln();
            if pred != label {
                self.wrong += 1;
                self.mistakes.push(Mistake { index: first + k, label, predicted: pred, confidence: conf });
            }
        }
        self.images += labels.len();
        self.loss = (loss_sum / self.images.max(1) as f64) as f32;
        self.accuracy = 1.0 - self.wrong as f32 / self.images.max(1) as f32;
        self.mistakes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        self.mistakes.truncate(keep);
    }

    /// Accuracy per true class.
    pub fn per_class_accuracy(&self) -> [f32; NUM_CLASSES] {
        let mut acc = [0.0; NUM_CLASSES];
        for (c, row) in self.confusion.iter().enumerate() {
            let total: u32 = row.iter().sum();
            acc[c] = if total > 0 { row[c] as f32 / total as f32 } else { 0.0 };
        }
        acc
    }
}

impl Default for Evaluation {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything a run produced, for the metrics JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunLog {
    pub config: serde_json::Value,
    pub parameters: usize,
    pub epochs: Vec<EpochStats>,
    pub batches: Vec<BatchStats>,
    pub last_evaluation: Option<Evaluation>,
    pub notes: Vec<String>,
}

impl RunLog {
    pub fn to_csv(&self) -> String {
        let mut s = String::from(EpochStats::CSV_HEADER);
        s.push('\n');
        for e in &self.epochs {
            s.push_str(&e.csv_line());
            s.push('\n');
        }
        s
    }
}

/// Test accuracies whose first crossing the page and the CLI report (the seed aimed at 93%;
/// the fastest recipes at 94%).
pub const TARGETS: [f32; 3] = [0.90, 0.93, 0.94];

/// When a run first reached a test accuracy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crossing {
    /// 1-based epoch.
    pub epoch: usize,
    /// Training and evaluation time up to the end of that epoch, seconds.
    pub total_time_s: f64,
}

/// The first epoch at which the test accuracy reached each target, if it did.
pub fn first_crossings(epochs: &[EpochStats], targets: &[f32]) -> Vec<(f32, Option<Crossing>)> {
    targets
        .iter()
        .map(|&target| {
            let hit = epochs
                .iter()
                .find(|e| e.test_acc >= target)
                .map(|e| Crossing { epoch: e.epoch, total_time_s: e.total_time_s });
            (target, hit)
        })
        .collect()
}

/// Views averaged at a test-time augmentation level (see `TrainConfig::tta`).
pub fn tta_views(level: usize) -> usize {
    match level {
        0 => 1,
        1 => 2,
        _ => 6,
    }
}

/// Seconds as h:mm:ss.
pub fn clock(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One line: when each target was first reached, e.g. "90%: epoch 7 at 0:12:31 · 93%: not yet".
pub fn crossings_summary(epochs: &[EpochStats]) -> String {
    first_crossings(epochs, &TARGETS)
        .iter()
        .map(|(t, hit)| match hit {
            Some(c) => format!("{:.0}%: epoch {} at {}", t * 100.0, c.epoch, clock(c.total_time_s)),
            None => format!("{:.0}%: not yet", t * 100.0),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}
