//! Data-parallel replicas (`replicas`) on native threads, against the micro-batched step on one
//! replica: the same passes in the same order, so the same weights and momentum to rounding.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::rc::Rc;

use burn::prelude::*;
use cifar10_webgpu::augment::{self, Normalization};
use cifar10_webgpu::config::TrainConfig;
use cifar10_webgpu::data::{Cifar10, Split};
use cifar10_webgpu::model::{is_buffer, ResNet9};
use cifar10_webgpu::replicas::layout::Layout;
use cifar10_webgpu::replicas::threads::ThreadHelpers;
use cifar10_webgpu::replicas::{slices, Helpers, Job, Task};
use cifar10_webgpu::saved::SavedRun;
use cifar10_webgpu::train::{evaluate, Control, EvalView, Event, Host, Trainer};

fn sample_data() -> Cifar10 {
    Cifar10 {
        train: Split::parse("train_2000.bin", &common::read_sample("train_2000.bin")).unwrap(),
        test: Split::parse("test_500.bin", &common::read_sample("test_500.bin")).unwrap(),
        class_names: cifar10_webgpu::data::DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

struct TestHost {
    start: std::time::Instant,
    helpers: Option<Rc<ThreadHelpers>>,
    batches: usize,
}

impl Host for TestHost {
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
    fn control(&self) -> Control {
        Control::Run
    }
    fn event(&mut self, event: Event) {
        if matches!(event, Event::Batch(_)) {
            self.batches += 1;
        }
    }
    async fn yield_now(&mut self) {}
    async fn sleep_ms(&mut self, _ms: u32) {}
    fn helpers(&self) -> Option<Rc<dyn Helpers>> {
        self.helpers.clone().map(|h| h as Rc<dyn Helpers>)
    }
}

/// |a - b| / |b| over whole vectors (Euclidean norms).
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n.max(1e-300)).sqrt()
}

/// Trainable parameters, running statistics and momentum of a run at an epoch's end.
fn state_of(saved: &SavedRun) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let pick = |buffers: bool| saved.model.tensors.iter().filter(|(n, _, _)| is_buffer(n) == buffers).flat_map(|(_, _, v)| v.clone()).collect();
    let momentum = saved.momentum.iter().flat_map(|(_, _, v)| v.clone()).collect();
    (pick(false), pick(true), momentum)
}

/// One epoch of 3 steps (uneven batches, real augmented images) and its evaluation, from one
/// model: on one replica in micro-batches of `ceil(batch / replicas)`, and on `replicas`
/// replicas (this thread and helper threads). Returns both runs, the helpers and the data.
fn both(replicas: usize, batch: usize, kill_at: Option<usize>) -> (Trainer, Trainer, Rc<ThreadHelpers>, Cifar10) {
    let data = sample_data();
    let norm = Normalization::from_split(&data.train);
    let config = TrainConfig::new()
        .with_epochs(2)
        .with_batch_size(batch)
        .with_width(0.0625)
        .with_max_lr(0.2)
        .with_peak_epoch(0.5)
        .with_train_subset(Some(batch * 3))
        .with_test_subset(Some(100));
    let device = Device::flex();
    let model = ResNet9::seeded(config.width, config.seed, &device.clone().autodiff());
    let steps = augment::steps_per_epoch(batch * 3, batch);
    let micro = batch.div_ceil(replicas);
    let mut one = Trainer::with_model(config.clone().with_micro_batch(Some(micro)), model.checkpoint(), &device, steps, norm.clone());
    let mut many = Trainer::with_model(config, model, &device, steps, norm);
    let data = data.subset(Some(batch * 3), Some(100));
    let helpers = Rc::new(ThreadHelpers::start(replicas - 1, &device));
    if let Some(step) = kill_at {
        helpers.kill_at_step(step);
    }
    let host = |helpers| TestHost { start: std::time::Instant::now(), helpers, batches: 0 };
    pollster::block_on(one.run_epoch(&data, &mut host(None))).unwrap();
    pollster::block_on(many.run_epoch(&data, &mut host(Some(helpers.clone())))).unwrap();
    (one, many, helpers, data)
}

fn compare(name: &str, one: &Trainer, many: &Trainer, data: &Cifar10) {
    let (a, b) = (pollster::block_on(one.save_run()).unwrap(), pollster::block_on(many.save_run()).unwrap());
    let ((pa, ra, ma), (pb, rb, mb)) = (state_of(&a), state_of(&b));
    let (dp, dm, dr) = (rel_diff(&pb, &pa), rel_diff(&mb, &ma), rel_diff(&rb, &ra));
    println!("{name}: weights differ by {dp:.2e}, momentum by {dm:.2e}; running statistics by {dr:.2e} (averaged vs sequential updates)");
    assert!(!mb.is_empty() && mb.len() == ma.len(), "{name}: momentum of {} and {} values", mb.len(), ma.len());
    assert!(dp < 1e-6, "{name}: the weights differ by {dp:.2e}");
    assert!(dm < 1e-6, "{name}: the momentum differs by {dm:.2e}");
    // The running statistics are meant to differ: the replicas average their updates (one a
    // step, see `the_running_mean_is_the_batch_s`), micro-batches update once a pass.
    assert!(dr.is_finite() && dr > 1e-3, "{name}: running statistics {dr:.2e} apart");
    let (ea, eb) = (one.last_evaluation.as_ref().unwrap(), many.last_evaluation.as_ref().unwrap());
    assert_eq!((ea.images, eb.images), (100, 100));
    assert!(ea.loss.is_finite() && eb.loss.is_finite());
    // The two test losses are not compared: they use those different running statistics
    // (27-56% apart after these steps over unseeded initial weights) and ended 2-14% apart,
    // which says nothing about the replicas. What the replicas change in the evaluation is who
    // computes it: the helpers each take a part of every chunk. The same model evaluated on
    // this thread alone:
    let cfg = &many.config;
    let view = EvalView { logit_scale: cfg.logit_scale, tta: 0 };
    let mut alone_host = TestHost { start: std::time::Instant::now(), helpers: None, batches: 0 };
    let alone = evaluate(&many.model, &data.test, &many.norm, cfg.eval_pass(), cfg.mistakes, view, &many.device, &mut alone_host);
    let alone = pollster::block_on(alone).unwrap();
    println!("{name}: test loss {:.6} split across the replicas, {:.6} on one thread", eb.loss, alone.loss);
    assert!((eb.loss - alone.loss).abs() <= 1e-5 * alone.loss.abs().max(1.0), "{name}: test loss {} vs {} on one thread", eb.loss, alone.loss);
    assert_eq!(eb.confusion, alone.confusion, "{name}: the confusion matrices differ");
}

#[test]
fn slices_are_the_micro_batches_of_ceil_batch_over_replicas() {
    assert_eq!(slices(35, 2), vec![18, 17]);
    assert_eq!(slices(50, 3), vec![17, 17, 16]);
    assert_eq!(slices(64, 1), vec![64]);
    assert_eq!(cifar10_webgpu::micro::split_sizes(50, Some(50usize.div_ceil(3))), slices(50, 3));
}

#[test]
fn two_replicas_step_as_micro_batches_of_half_the_batch() {
    let (one, many, helpers, data) = both(2, 35, None);
    assert_eq!((one.step, many.step), (3, 3));
    assert_eq!(helpers.count(), 1);
    assert_eq!(many.replica_times.replicas, 2, "{:?}", many.replica_times);
    compare("2 replicas, batch 35 (18 + 17)", &one, &many, &data);
}

#[test]
fn three_replicas_step_as_micro_batches_of_a_third_and_stay_identical() {
    let (one, many, helpers, data) = both(3, 50, None);
    compare("3 replicas, batch 50 (17 + 17 + 16)", &one, &many, &data);
    // Every helper holds the main replica's weights (sent with the evaluation) exactly.
    let layout = Layout::of(&many.model);
    let main = pollster::block_on(layout.read(&many.model)).unwrap();
    helpers.send((0..helpers.count()).map(|_| Job { task: Task::Weights, weights: None, images: Vec::new() }).collect());
    let answers = pollster::block_on(helpers.gather());
    assert_eq!(answers.len(), 2);
    for answer in answers {
        let held = answer.unwrap().flat;
        assert!(held == main, "a helper's weights differ from the main replica's");
    }
}

/// A helper that dies while it holds its slice costs nothing but time: this thread computes
/// the slice, the step is the same, and the run goes on with the helpers left.
#[test]
fn a_helper_that_dies_mid_step_leaves_the_same_step() {
    let (one, many, helpers, data) = both(3, 50, Some(2));
    assert_eq!(helpers.count(), 1, "the killed helper is retired");
    assert_eq!(helpers.retired().len(), 1);
    compare("3 replicas, one killed at step 2 (the last)", &one, &many, &data);
}

/// The replicas' running statistics: each replica updates them from its slice and the main
/// replica keeps the mean weighted by the slices' shares, one update a step with the batch's
/// mean. Checked where the inputs are the same in every run: the first BatchNorm after one
/// step, whose running mean must be the whole batch's (an unweighted mean of 18 and 17 image
/// slices would be off by ~1e-3; micro-batches updating twice, by 90%).
#[test]
fn the_running_mean_is_the_batch_s() {
    let data = sample_data();
    let norm = Normalization::from_split(&data.train);
    let config = TrainConfig::new().with_epochs(1).with_batch_size(35).with_width(0.0625);
    let device = Device::flex();
    let model = ResNet9::seeded(config.width, config.seed, &device.clone().autodiff());
    let mut whole = Trainer::with_model(config.clone(), model.checkpoint(), &device, 1, norm.clone());
    let mut many = Trainer::with_model(config, model, &device, 1, norm.clone());
    let indices: Vec<usize> = (0..35).collect();
    let batch = augment::make_batch(&data.train, &indices, augment::Augment::FULL, &norm, &mut augment::rng(1, 0));
    let host = |helpers| TestHost { start: std::time::Instant::now(), helpers, batches: 0 };
    // And with the helper killed in the step: this thread computes its slice too, from the
    // step's running statistics.
    let mut killed = Trainer::with_model(many.config.clone(), many.model.checkpoint(), &device, 1, norm.clone());
    pollster::block_on(whole.step_on(batch.clone(), &host(None))).unwrap();
    let helpers = Rc::new(ThreadHelpers::start(1, &device));
    pollster::block_on(many.step_on(batch.clone(), &host(Some(helpers)))).unwrap();
    assert_eq!(many.replica_times.replicas, 2);
    let dying = Rc::new(ThreadHelpers::start(1, &device));
    dying.kill_at_step(0);
    pollster::block_on(killed.step_on(batch, &host(Some(dying.clone())))).unwrap();
    assert_eq!((dying.count(), dying.retired().len()), (0, 1));
    let mean = |t: &Trainer| {
        let snap = pollster::block_on(cifar10_webgpu::weights::snapshot(&t.model)).unwrap();
        snap.tensors.into_iter().find(|(n, _, _)| n == "prep.bn.running_mean").unwrap().2
    };
    for (name, t) in [("replicas", &many), ("a killed helper", &killed)] {
        let d = rel_diff(&mean(t), &mean(&whole));
        println!("prep.bn.running_mean after one step: {name} vs whole batch {d:.2e}");
        assert!(d < 1e-5, "{name}: the running mean is {d:.2e} off the batch's");
    }
}
