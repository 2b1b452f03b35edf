//! Every hyper-parameter of the recipe in one place, with its unit.

use burn::config::Config;

/// The training recipe. Defaults reproduce the seed: 24 epochs, batch 512, One-Cycle peaking
/// at epoch 5, Nesterov SGD with momentum cycling 0.95 -> 0.85 -> 0.95, weight decay 5e-4.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    #[config(default = 24)]
    pub epochs: usize,
    /// Images per optimiser step.
    #[config(default = 512)]
    pub batch_size: usize,
    /// Peak learning rate of the One-Cycle, on the mean loss of a batch. The seed's LR range test
    /// found 0.055. Page's 0.4 relies on scaling the logits by 1/8, which this net does not do:
    /// on the same card and files PyTorch reached 88.95% at 0.055, 87.98% at 0.15 and 88.46%
    /// at 0.4 (BENCHMARKS.md).
    #[config(default = 0.055)]
    pub max_lr: f64,
    /// Epoch (fractional allowed) at which the learning rate peaks.
    #[config(default = 5.0)]
    pub peak_epoch: f64,
    /// Momentum at the start and the end of the cycle.
    #[config(default = 0.95)]
    pub max_momentum: f64,
    /// Momentum at the peak learning rate.
    #[config(default = 0.85)]
    pub base_momentum: f64,
    /// L2 weight decay, added to the gradient as `wd * p`.
    #[config(default = 5e-4)]
    pub weight_decay: f64,
    /// Cutout of one 8x8 square per image.
    #[config(default = true)]
    pub cutout: bool,
    /// Channel multiplier (1.0 = 6,573,130 parameters); tests use narrow nets.
    #[config(default = 1.0)]
    pub width: f64,
    /// Train on the first N images only (None: all 50,000).
    #[config(default = "None")]
    pub train_subset: Option<usize>,
    /// Evaluate on the first N test images only (None: all 10,000).
    #[config(default = "None")]
    pub test_subset: Option<usize>,
    /// Seed of initialisation, shuffling and augmentation.
    #[config(default = 0)]
    pub seed: u64,
    /// Read the training loss back every N batches. Each read waits for the GPU queue to drain,
    /// so reading every batch would stall the pipeline; in between, loss and accuracy accumulate
    /// on the device.
    #[config(default = 10)]
    pub read_every: usize,
    /// Images per forward pass during evaluation.
    #[config(default = 500)]
    pub eval_batch: usize,
    /// How many of the most confident mistakes to keep after each evaluation.
    #[config(default = 32)]
    pub mistakes: usize,
    /// The most images one forward/backward pass takes, in images (None: the whole batch).
    /// A batch larger than this trains as the fewest equal micro-batches that fit, their
    /// gradients summed into one optimiser step at the batch's LR and schedule; BatchNorm
    /// normalises each micro-batch with its own statistics. Evaluation passes are capped at it
    /// too. Set from the device's limits (`micro::micro_batches`), not a hyper-parameter: it is
    /// no form field, but the run log records it.
    #[config(default = "None")]
    pub micro_batch: Option<usize>,

    // The tricks of the `fast` preset (see `TrainConfig::preset`). Each is off by default, so
    // the default config stays the seed's recipe exactly.
    /// Logits are multiplied by this before the loss and the softmax (Page: 1/8, which lets the
    /// peak LR rise about eightfold). 1 = off.
    #[config(default = 1.0)]
    pub logit_scale: f64,
    /// Label smoothing of the training loss, as a fraction of the target spread over all
    /// classes (airbench: 0.2). 0 = off. The test loss stays plain cross-entropy.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Each image gets one fixed random flip bit; even epochs use it, odd epochs its opposite
    /// (airbench), so consecutive epochs see both sides. Off: an independent coin every epoch.
    #[config(default = false)]
    pub alternating_flip: bool,
    /// BatchNorm scales stay at 1: not trained, no weight decay (Page, airbench).
    #[config(default = false)]
    pub bn_freeze_scale: bool,
    /// Learning-rate multiplier of BatchNorm biases, times the schedule's LR; their weight decay
    /// is divided by it, so decay per step is unchanged (airbench: 64). 1 = off.
    #[config(default = 1.0)]
    pub bn_bias_lr: f64,
    /// airbench's Lookahead: every 5 steps the slow weights (running statistics too) move
    /// towards the trained ones by 1 - 0.95^5 x (progress)^3 and the trained ones are reset to
    /// them; after the last step the slow weights are kept.
    #[config(default = false)]
    pub lookahead: bool,
    /// Test-time augmentation at the last evaluation, in views: 0 the image only, 1 with its
    /// mirror (2 passes), 2 also the mirrored pair shifted 1 pixel up-left and down-right (6
    /// passes). Earlier epochs evaluate on the image only, to keep their cost.
    #[config(default = 0)]
    pub tta: usize,
}

impl TrainConfig {
    /// Images per evaluation pass: `eval_batch`, capped at `micro_batch` (a forward pass's
    /// largest buffer grows with its images as a training pass's does).
    pub fn eval_pass(&self) -> usize {
        self.micro_batch.map_or(self.eval_batch, |m| m.min(self.eval_batch)).max(1)
    }
}

/// The named recipes: `seed` (the default, the seed's exact recipe) and `fast`.
pub const RECIPES: [&str; 2] = ["seed", "fast"];

impl TrainConfig {
    /// The config of a named recipe. `fast` is the seed's net and schedule with the tricks of
    /// the fields above that helped on the proxy (BENCHMARKS.md), at 10 epochs and peak LR 0.4
    /// (Page's LR for logits scaled by 1/8; on the proxy it tied 0.8 and beat 0.2). The
    /// BatchNorm rules stay off: frozen scales with bias LR x64 cost 2 points there.
    pub fn preset(name: &str) -> Option<TrainConfig> {
        match name {
            "seed" => Some(TrainConfig::new()),
            "fast" => {
                let epochs = 10;
                Some(
                    TrainConfig::new()
                        .with_epochs(epochs)
                        .with_peak_epoch(TrainConfig::scaled_peak(epochs))
                        .with_max_lr(0.4)
                        .with_logit_scale(0.125)
                        .with_label_smoothing(0.2)
                        .with_alternating_flip(true)
                        .with_lookahead(true)
                        .with_tta(2),
                )
            }
            _ => None,
        }
    }

    /// The named recipe this config is, if its tricks and schedule match one exactly
    /// (data subsets, width, seed and other run settings aside).
    pub fn recipe_name(&self) -> Option<&'static str> {
        RECIPES.into_iter().find(|name| {
            TrainConfig::preset(name).is_some_and(|p| {
                TRICK_FIELDS.iter().chain(["epochs", "max_lr", "peak_epoch"].iter()).all(|k| p.field(k) == self.field(k))
            })
        })
    }
}

/// The form keys of the tricks (all off in `seed`).
pub const TRICK_FIELDS: [&str; 7] =
    ["logit_scale", "label_smoothing", "alternating_flip", "bn_freeze_scale", "bn_bias_lr", "lookahead", "tta"];

impl TrainConfig {
    /// Checks ranges; the message names the field as the form and the CLI do.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if self.epochs == 0 || self.epochs > 1000 {
            errors.push("epochs must be between 1 and 1000".to_string());
        }
        if self.batch_size == 0 || self.batch_size > 8192 {
            errors.push("batch must be between 1 and 8192".to_string());
        }
        // Wider than the form's (0, 10]: tests drive the engine into divergence on purpose.
        if !(self.max_lr.is_finite() && self.max_lr > 0.0 && self.max_lr <= 1e4) {
            errors.push("max_lr must be in (0, 10000]".to_string());
        }
        // A peak after the last epoch means the LR rises for the whole run (the schedule clamps).
        if !(self.peak_epoch.is_finite() && self.peak_epoch >= 0.0) {
            errors.push("peak_epoch must be 0 or more".to_string());
        }
        for (name, m) in [("max_momentum", self.max_momentum), ("base_momentum", self.base_momentum)] {
            if !(0.0..1.0).contains(&m) {
                errors.push(format!("{name} must be in [0, 1)"));
            }
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay < 1.0) {
            errors.push("weight_decay must be in [0, 1)".to_string());
        }
        if !(self.width > 0.0 && self.width <= 4.0) {
            errors.push("width must be in (0, 4]".to_string());
        }
        if self.train_subset == Some(0) || self.test_subset == Some(0) {
            errors.push("subsets must hold at least one image".to_string());
        }
        if self.read_every == 0 || self.eval_batch == 0 {
            errors.push("read_every and eval_batch must be positive".to_string());
        }
        if self.micro_batch == Some(0) {
            errors.push("micro_batch must be at least 1 image".to_string());
        }
        if !(self.logit_scale.is_finite() && self.logit_scale > 0.0 && self.logit_scale <= 100.0) {
            errors.push("logit_scale must be in (0, 100]".to_string());
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            errors.push("label_smoothing must be in [0, 1)".to_string());
        }
        if !(self.bn_bias_lr.is_finite() && self.bn_bias_lr > 0.0 && self.bn_bias_lr <= 1000.0) {
            errors.push("bn_bias_lr must be in (0, 1000]".to_string());
        }
        if self.tta > 2 {
            errors.push("tta must be 0, 1 or 2".to_string());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }
}

/// The query-parameter / form keys, in form order, with their labels. `recipe` comes first: it
/// sets every field below it to the preset's value, then the others given override it.
pub const FORM_FIELDS: [(&str, &str); 20] = [
    ("recipe", "Recipe"),
    ("epochs", "Epochs"),
    ("batch", "Batch size"),
    ("max_lr", "Max LR"),
    ("peak_epoch", "Peak at epoch"),
    ("max_momentum", "Momentum (start/end)"),
    ("base_momentum", "Momentum (at peak)"),
    ("wd", "Weight decay"),
    ("cutout", "Cutout"),
    ("width", "Width multiplier"),
    ("train_subset", "Train subset (blank: all)"),
    ("test_subset", "Test subset (blank: all)"),
    ("seed", "Seed"),
    ("logit_scale", "Logit scale"),
    ("label_smoothing", "Label smoothing"),
    ("alternating_flip", "Alternating flip"),
    ("bn_freeze_scale", "Freeze BatchNorm scales"),
    ("bn_bias_lr", "BatchNorm bias LR multiplier"),
    ("lookahead", "Lookahead"),
    ("tta", "Test-time augmentation (0-2)"),
];

/// The form keys shown as checkboxes.
pub const BOOL_FIELDS: [&str; 4] = ["cutout", "alternating_flip", "bn_freeze_scale", "lookahead"];

impl TrainConfig {
    /// The form/query value of a field.
    pub fn field(&self, key: &str) -> String {
        let opt = |v: Option<usize>| v.map(|n| n.to_string()).unwrap_or_default();
        match key {
            "epochs" => self.epochs.to_string(),
            "batch" => self.batch_size.to_string(),
            "max_lr" => self.max_lr.to_string(),
            "peak_epoch" => self.peak_epoch.to_string(),
            "max_momentum" => self.max_momentum.to_string(),
            "base_momentum" => self.base_momentum.to_string(),
            "wd" => self.weight_decay.to_string(),
            "cutout" => self.cutout.to_string(),
            "width" => self.width.to_string(),
            "train_subset" => opt(self.train_subset),
            "test_subset" => opt(self.test_subset),
            "seed" => self.seed.to_string(),
            "recipe" => self.recipe_name().unwrap_or("custom").to_string(),
            "logit_scale" => self.logit_scale.to_string(),
            "label_smoothing" => self.label_smoothing.to_string(),
            "alternating_flip" => self.alternating_flip.to_string(),
            "bn_freeze_scale" => self.bn_freeze_scale.to_string(),
            "bn_bias_lr" => self.bn_bias_lr.to_string(),
            "lookahead" => self.lookahead.to_string(),
            "tta" => self.tta.to_string(),
            _ => String::new(),
        }
    }

    /// Sets one field from text; the error names what is wrong with it.
    pub fn set_field(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        fn p<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
            v.parse().map_err(|_| format!("{what}, not \"{v}\""))
        }
        let subset = |v: &str| -> Result<Option<usize>, String> {
            if v.is_empty() || v == "all" {
                Ok(None)
            } else {
                match v.parse::<usize>() {
                    Ok(0) | Err(_) => Err(format!("a positive whole number or blank, not \"{v}\"")),
                    Ok(n) => Ok(Some(n)),
                }
            }
        };
        let flag = |v: &str| -> Result<bool, String> {
            match v {
                "true" | "1" | "on" | "yes" => Ok(true),
                "false" | "0" | "off" | "no" => Ok(false),
                _ => Err("true or false".into()),
            }
        };
        // Above 0 (a scale or rate of 0 means nothing) and at most `hi`.
        let positive = |x: f64, hi: f64| -> Result<f64, String> {
            if x > 0.0 && x <= hi { Ok(x) } else { Err(format!("above 0 and at most {hi}")) }
        };
        let in_range = |x: f64, lo: f64, hi: f64, what: &str| -> Result<f64, String> {
            if x.is_finite() && x >= lo && x <= hi { Ok(x) } else { Err(format!("{what} between {lo} and {hi}")) }
        };
        match key {
            "epochs" => {
                let n: usize = p(v, "a whole number")?;
                if !(1..=1000).contains(&n) {
                    return Err("between 1 and 1000".into());
                }
                self.epochs = n;
            }
            "batch" => {
                let n: usize = p(v, "a whole number")?;
                if !(1..=8192).contains(&n) {
                    return Err("between 1 and 8192".into());
                }
                self.batch_size = n;
            }
            "max_lr" => self.max_lr = positive(p(v, "a number")?, 10.0)?,
            "peak_epoch" => self.peak_epoch = in_range(p(v, "a number")?, 0.0, 1000.0, "a number")?,
            "max_momentum" => self.max_momentum = in_range(p(v, "a number")?, 0.0, 0.999, "a number")?,
            "base_momentum" => self.base_momentum = in_range(p(v, "a number")?, 0.0, 0.999, "a number")?,
            "wd" => self.weight_decay = in_range(p(v, "a number")?, 0.0, 0.1, "a number")?,
            "cutout" => self.cutout = flag(v)?,
            "alternating_flip" => self.alternating_flip = flag(v)?,
            "bn_freeze_scale" => self.bn_freeze_scale = flag(v)?,
            "lookahead" => self.lookahead = flag(v)?,
            "logit_scale" => self.logit_scale = positive(p(v, "a number")?, 100.0)?,
            "label_smoothing" => {
                let x: f64 = p(v, "a number")?;
                if !(0.0..1.0).contains(&x) {
                    return Err("at least 0 and below 1".into());
                }
                self.label_smoothing = x;
            }
            "bn_bias_lr" => self.bn_bias_lr = positive(p(v, "a number")?, 1000.0)?,
            "tta" => {
                let n: usize = p(v, "0, 1 or 2")?;
                if n > 2 {
                    return Err("0, 1 or 2".into());
                }
                self.tta = n;
            }
            "recipe" => match TrainConfig::preset(v) {
                // Run settings (subsets, width, seed) survive a change of recipe.
                Some(preset) => {
                    for key in TRICK_FIELDS.iter().chain(["epochs", "max_lr", "peak_epoch"].iter()) {
                        self.set_field(key, &preset.field(key))?;
                    }
                }
                None if v == "custom" => {}
                None => return Err(format!("one of {}, not \"{v}\"", RECIPES.join(", "))),
            },
            "width" => {
                let x: f64 = p(v, "a number")?;
                if !(x >= 1.0 / 64.0 && x <= 4.0) {
                    return Err("between 1/64 and 4".into());
                }
                self.width = x;
            }
            "train_subset" => self.train_subset = subset(v)?,
            "test_subset" => self.test_subset = subset(v)?,
            "seed" => self.seed = p(v, "a whole number")?,
            _ => return Err(format!("unknown setting {key}")),
        }
        Ok(())
    }

    /// Builds a config from form or query pairs; unknown keys are ignored, each bad value is
    /// reported with its key.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Self, Vec<(String, String)>) {
        let mut config = TrainConfig::new();
        let mut errors = Vec::new();
        let mut peak_given = false;
        // The recipe first, wherever it stands, so the other fields given override it.
        let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        pairs.sort_by_key(|(k, _)| *k != "recipe");
        for (k, v) in pairs {
            if FORM_FIELDS.iter().any(|(key, _)| *key == k) {
                peak_given |= k == "peak_epoch";
                if let Err(e) = config.set_field(k, v) {
                    errors.push((k.to_string(), e));
                }
            }
        }
        if !peak_given {
            config.peak_epoch = TrainConfig::scaled_peak(config.epochs);
        }
        if peak_given && config.peak_epoch > config.epochs as f64 {
            errors.push(("peak_epoch".into(), "must not be after the last epoch".into()));
        }
        (config, errors)
    }

    /// The recipe's peak (epoch 5 of 24) moved proportionally for a run of `epochs`, to four
    /// decimals so it reads well in the form and survives a round trip through a link.
    pub fn scaled_peak(epochs: usize) -> f64 {
        let d = TrainConfig::new();
        (d.peak_epoch * epochs as f64 / d.epochs as f64 * 1e4).round() / 1e4
    }

    /// The query string: the nearest recipe (unless `seed`), then every field that differs
    /// from it.
    pub fn to_query(&self) -> String {
        let differing = |base: &TrainConfig| -> Vec<&str> {
            FORM_FIELDS.iter().map(|(k, _)| *k).filter(|k| *k != "recipe" && self.field(k) != base.field(k)).collect()
        };
        let (name, keys) = RECIPES
            .iter()
            .filter_map(|name| TrainConfig::preset(name).map(|p| (*name, differing(&p))))
            .min_by_key(|(_, keys)| keys.len())
            .unwrap_or(("seed", differing(&TrainConfig::new())));
        let recipe = (name != "seed").then(|| format!("recipe={name}"));
        recipe
            .into_iter()
            .chain(keys.iter().map(|k| format!("{k}={}", self.field(k))))
            .collect::<Vec<_>>()
            .join("&")
    }
}
