//! A seeded mutation fuzzer for every parser that reads a file a user hands us: CIFAR-10
//! shards, `batches.meta.txt`, the tar.gz reader, safetensors and burnpack weights, and a
//! saved training state (`train --resume`).
//!
//! Each case mutates real files (bit flips, edge values, truncation, extension, splices, and
//! corrupted size fields of the tar, gzip, safetensors and burnpack layouts) with an RNG seeded
//! by `(seed, case)` alone, so [`Fuzzer::input`] rebuilds any failing case on its own. A case
//! fails when its parser panics or breaks an invariant of what it accepted; an error is the
//! right answer to a broken file and counts as a rejection.
//!
//! Memory bounds (the parsers refuse before allocating more):
//! - shards and `batches.meta.txt`: proportional to the input (the parser copies it once);
//! - tarball: one entry at most [`data::SHARD_BYTES`], the whole inflated stream at most
//!   [`data::MAX_ARCHIVE_BYTES`];
//! - safetensors: the header at most 100,000,000 bytes (the `safetensors` crate), tensors
//!   must lie inside the input;
//! - burnpack (weights, resume state): metadata at most 100 MiB (`burn-pack`), tensors must
//!   lie inside the input; the model size comes from a validated width (at most 4).
//!
//! Native only: the resume state is native, and panics are caught with `catch_unwind`.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use burn::prelude::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::TrainConfig;
use crate::data::{self, Cifar10, ShardSet, Split, RECORD_BYTES};
use crate::model::ResNet9;
use crate::train::{Control, Event, Host, Trainer};
use crate::weights;

/// The parsers under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parser {
    Shard,
    Meta,
    Tarball,
    Safetensors,
    Burnpack,
    Resume,
}

impl Parser {
    pub const ALL: [Parser; 6] =
        [Parser::Shard, Parser::Meta, Parser::Tarball, Parser::Safetensors, Parser::Burnpack, Parser::Resume];

    pub fn name(self) -> &'static str {
        match self {
            Parser::Shard => "shard",
            Parser::Meta => "batches.meta.txt",
            Parser::Tarball => "tar.gz",
            Parser::Safetensors => "safetensors",
            Parser::Burnpack => "burnpack",
            Parser::Resume => "resume state",
        }
    }
}

/// One case: the file (the resume state is three: `state.json`, `model.bpk`, `optimizer.bpk`).
pub type Input = Vec<Vec<u8>>;

/// A case that failed: enough to rebuild it with [`Fuzzer::input`].
#[derive(Clone, Debug)]
pub struct Failure {
    pub parser: Parser,
    pub seed: u64,
    pub case: u64,
    pub message: String,
}

/// What one parser did over a run.
#[derive(Clone, Debug)]
pub struct Report {
    pub parser: Parser,
    pub cases: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failures: Vec<Failure>,
    pub seconds: f64,
    /// Peak resident memory of the process during this parser's run (KiB), when Linux can
    /// reset the peak (`/proc/self/clear_refs`); else the process's peak so far.
    pub peak_rss_kib: Option<u64>,
    /// Whether the peak was reset before this parser ran (else it covers earlier work too).
    pub peak_reset: bool,
    pub largest_input: usize,
}

impl Report {
    pub fn cases_per_s(&self) -> f64 {
        self.cases as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<16} {:>8} cases {:>9.0} cases/s {:>8} accepted {:>8} rejected {:>3} failures  peak RSS {}  largest input {} B",
            self.parser.name(),
            self.cases,
            self.cases_per_s(),
            self.accepted,
            self.rejected,
            self.failures.len(),
            self.peak_rss_kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            self.largest_input,
        )
    }
}

/// The real files the mutations start from.
pub struct Fuzzer {
    shards: Vec<Vec<u8>>,
    meta: Vec<Vec<u8>>,
    /// Plain tars: mutated, then gzipped, so the tar layer is reached past gzip's CRC.
    tars: Vec<Vec<u8>>,
    /// The same tars gzipped: mutated as they are, for the gzip layer.
    gzips: Vec<Vec<u8>>,
    safetensors: Vec<Vec<u8>>,
    burnpacks: Vec<Vec<u8>>,
    /// `state.json`, `model.bpk`, `optimizer.bpk` of a run saved after one epoch.
    resume: Input,
    /// The data the resume state was saved for.
    resume_data: Cifar10,
    device: Device,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

fn tar(entries: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, *bytes).map_err(|e| e.to_string())?;
    }
    builder.into_inner().map_err(|e| e.to_string())
}

/// A host that runs to the end and ignores progress.
struct QuietHost;

impl Host for QuietHost {
    fn now_ms(&self) -> f64 {
        0.0
    }
    fn control(&self) -> Control {
        Control::Run
    }
    fn event(&mut self, _: Event) {}
    async fn yield_now(&mut self) {}
    async fn sleep_ms(&mut self, _: u32) {}
}

impl Fuzzer {
    /// Builds the seed files from the real CIFAR-10 sample in `sample_dir` (`train_2000.bin`,
    /// `test_500.bin`, `batches.meta.txt`). A few records each keep a case fast.
    pub fn new(sample_dir: &Path) -> Result<Self, String> {
        let read = |name: &str| std::fs::read(sample_dir.join(name)).map_err(|e| format!("{name}: {e}"));
        let train = read("train_2000.bin")?;
        let test = read("test_500.bin")?;
        let meta = read(data::META_FILE)?;
        let records = |bytes: &[u8], n: usize| bytes.get(..n * RECORD_BYTES).map(<[u8]>::to_vec);
        let (train4, test2) = records(&train, 4)
            .zip(records(&test, 2))
            .ok_or("sample shards shorter than a few records")?;
        let official = tar(&[
            ("cifar-10-batches-bin/batches.meta.txt", &meta),
            ("cifar-10-batches-bin/train_4.bin", &train4),
            ("cifar-10-batches-bin/test_2.bin", &test2),
        ])?;
        let odd = tar(&[
            ("readme.html", b"<p>not a shard</p>"),
            ("data_batch_1.bin", &train4[..RECORD_BYTES]),
            ("test_batch.bin", &test2),
        ])?;
        let tars = vec![official, odd];
        let gzips = tars.iter().map(|t| gzip(t)).collect();

        let device = Device::flex();
        let tiny = pollster::block_on(weights::snapshot(&ResNet9::new(0.0625, &device)))
            .map_err(|e| e.to_string())?;
        let safetensors = vec![tiny.to_safetensors().map_err(|e| e.to_string())?];
        let burnpacks = vec![tiny.to_burnpack().map_err(|e| e.to_string())?];

        // A saved state after one epoch, so the optimiser file holds momentum buffers.
        let resume_data = Cifar10 {
            train: Split::parse("train", &train[..64 * RECORD_BYTES]).map_err(|e| e.to_string())?,
            test: Split::parse("test", &test2).map_err(|e| e.to_string())?,
            class_names: data::parse_class_names(&String::from_utf8_lossy(&meta)),
        };
        let config = TrainConfig::new().with_epochs(2).with_batch_size(32).with_width(0.0625);
        let mut trainer = Trainer::new(config, &resume_data, &device).map_err(|e| e.to_string())?;
        pollster::block_on(trainer.run_epoch(&resume_data, &mut QuietHost)).map_err(|e| e.to_string())?;
        // One folder per fuzzer: tests build several in one process at once.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cifar10-fuzz-state-{}-{n}", std::process::id()));
        trainer.save_state(&dir)?;
        let resume = ["state.json", "model.bpk", "optimizer.bpk"]
            .iter()
            .map(|f| std::fs::read(dir.join(f)).map_err(|e| format!("{f}: {e}")))
            .collect::<Result<Input, String>>()?;
        let _ = std::fs::remove_dir_all(&dir);
        Trainer::resume_from_bytes(&resume[0], &resume[1], &resume[2], None, &resume_data, &device)
            .map_err(|e| format!("the unmutated resume state does not load: {e}"))?;

        Ok(Self {
            shards: vec![train4, test2],
            meta: vec![meta],
            tars,
            gzips,
            safetensors,
            burnpacks,
            resume,
            resume_data,
            device,
        })
    }

    /// The unmutated resume state (`state.json`, `model.bpk`, `optimizer.bpk`) and the data
    /// it was saved for, for tests that corrupt one field by hand.
    pub fn resume_seed(&self) -> (&Input, &Cifar10, &Device) {
        (&self.resume, &self.resume_data, &self.device)
    }

    /// The input of case `case` of a run seeded with `seed`, for `parser`.
    pub fn input(&self, parser: Parser, seed: u64, case: u64) -> Input {
        // splitmix-style mixing: neighbouring cases get unrelated streams.
        let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ case.wrapping_add(0xD1B5_4A32_D192_ED03);
        let mut rng = StdRng::seed_from_u64(mixed ^ ((parser as u64) << 56));
        match parser {
            Parser::Shard => vec![mutate(&mut rng, &self.shards, |_| None, None)],
            Parser::Meta => vec![mutate(&mut rng, &self.meta, |_| None, None)],
            Parser::Tarball => {
                if rng.random_bool(0.5) {
                    vec![gzip(&mutate(&mut rng, &self.tars, |_| None, Some(corrupt_tar)))]
                } else {
                    vec![mutate(&mut rng, &self.gzips, |s| Some(0..s.len().min(20)), Some(corrupt_gzip))]
                }
            }
            Parser::Safetensors => vec![mutate(&mut rng, &self.safetensors, safetensors_header, Some(corrupt_u64_prefix))],
            Parser::Burnpack => vec![mutate(&mut rng, &self.burnpacks, burnpack_header, Some(corrupt_burnpack_size))],
            Parser::Resume => {
                let mut files = self.resume.clone();
                let which = rng.random_range(0..3);
                let pool = vec![files[which].clone()];
                files[which] = match which {
                    0 => mutate(&mut rng, &pool, |_| None, None),
                    _ => mutate(&mut rng, &pool, burnpack_header, Some(corrupt_burnpack_size)),
                };
                files
            }
        }
    }

    /// Runs one case: `Ok(true)` accepted, `Ok(false)` rejected, `Err` a broken invariant.
    pub fn check(&self, parser: Parser, input: &Input) -> Result<bool, String> {
        let bytes = input.first().map(Vec::as_slice).unwrap_or_default();
        match parser {
            Parser::Shard => {
                if let Ok(split) = Split::parse("fuzz.bin", bytes) {
                    if split.images.len() != split.len() * data::IMAGE_BYTES
                        || split.labels.iter().any(|&l| l as usize >= data::NUM_CLASSES)
                    {
                        return Err("a parsed split breaks its layout".into());
                    }
                }
                let mut set = ShardSet::new();
                let train = set.add("train_fuzz.bin", bytes);
                let _ = set.add("data_batch_1.bin", bytes);
                let _ = set.add("test_batch.bin", bytes);
                let _ = set.add("test_fuzz.bin", bytes);
                Ok(train.is_ok() && set.finish().is_ok())
            }
            Parser::Meta => {
                let names = data::parse_class_names(&String::from_utf8_lossy(bytes));
                if names.len() != data::NUM_CLASSES {
                    return Err(format!("{} class names", names.len()));
                }
                let mut set = ShardSet::new();
                set.add(data::META_FILE, bytes).map_err(|e| format!("class names refused: {e}"))?;
                // Accepted: the file's own ten names, not the fallback.
                let text = String::from_utf8_lossy(bytes);
                Ok(text.lines().filter(|l| !l.trim().is_empty()).count() == data::NUM_CLASSES)
            }
            Parser::Tarball => match data::read_tarball(bytes, |_| {}) {
                Ok(d) if d.train.is_empty() || d.test.is_empty() || d.class_names.len() != 10 => {
                    Err("an accepted archive lacks a split or class names".into())
                }
                Ok(_) => Ok(true),
                Err(_) => Ok(false),
            },
            Parser::Safetensors | Parser::Burnpack => Ok(weights::import(bytes, &self.device).is_ok()),
            Parser::Resume => {
                let file = |i: usize| input.get(i).map(Vec::as_slice).unwrap_or_default();
                let resumed =
                    Trainer::resume_from_bytes(file(0), file(1), file(2), None, &self.resume_data, &self.device);
                let accepted = resumed.is_ok();
                drop(resumed);
                // burn-autodiff keeps ~1.7 KB of bookkeeping per dropped `require_grad` leaf until
                // the thread's next backward pass (measured: a leaf alone grows, a backward after
                // it does not). Training runs one every step; thousands of trainers built without
                // one grew 62 KB each. A tiny backward here keeps the figure the parser's own.
                let leaf = burn::tensor::Tensor::<1>::zeros([1], &self.device.clone().autodiff()).require_grad();
                let _ = leaf.sum().backward();
                Ok(accepted)
            }
        }
    }

    /// Runs cases `0..cases` of `parser`, each under `catch_unwind`.
    pub fn run(&self, parser: Parser, seed: u64, cases: u64) -> Report {
        install_panic_hook();
        let reset_peak = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let start = Instant::now();
        let mut report = Report {
            parser,
            cases,
            accepted: 0,
            rejected: 0,
            failures: Vec::new(),
            seconds: 0.0,
            peak_rss_kib: None,
            peak_reset: false,
            largest_input: 0,
        };
        for case in 0..cases {
            let input = self.input(parser, seed, case);
            report.largest_input = report.largest_input.max(input.iter().map(Vec::len).sum());
            CATCHING.with(|c| c.set(true));
            let outcome = catch_unwind(AssertUnwindSafe(|| self.check(parser, &input)));
            CATCHING.with(|c| c.set(false));
            let message = match outcome {
                Ok(Ok(true)) => {
                    report.accepted += 1;
                    continue;
                }
                Ok(Ok(false)) => {
                    report.rejected += 1;
                    continue;
                }
                Ok(Err(broken)) => format!("invariant: {broken}"),
                Err(_) => format!("panic: {}", LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default()),
            };
            report.failures.push(Failure { parser, seed, case, message });
        }
        report.seconds = start.elapsed().as_secs_f64();
        report.peak_rss_kib = peak_rss_kib();
        report.peak_reset = reset_peak;
        report
    }
}

thread_local! {
    /// Set while this thread runs a case: its panics are recorded, not printed.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records panics of fuzzing threads (message and place) instead of printing them; other
/// threads keep the previous hook, so parallel tests print as usual.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let text = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{text}{place}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// The process's peak resident memory (`VmHWM`), Linux only.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Integers that break size arithmetic.
const EDGE_INTS: [u64; 12] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 60,
    i64::MAX as u64,
    u64::MAX,
];

/// Numbers written as text (JSON headers, tar's octal fields, `state.json`).
const EDGE_NUMBERS: [&str; 10] = [
    "0",
    "-1",
    "1e308",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "77777777777",
    "NaN",
    "0.0000001",
];

/// A region to aim half of the positional mutations at (a format's header), if any.
type Hot = fn(&[u8]) -> Option<Range<usize>>;
/// A mutation that knows the format.
type Special = fn(&mut Vec<u8>, &mut StdRng);

/// One to four stacked mutations of a seed picked from `seeds`.
fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], hot: Hot, special: Option<Special>) -> Vec<u8> {
    let mut buf = seeds[rng.random_range(0..seeds.len())].clone();
    let region = hot(&buf);
    let rounds = 1 + rng.random_range(0..4usize).min(rng.random_range(0..4usize));
    for _ in 0..rounds {
        let len = buf.len();
        let pos = |rng: &mut StdRng| match &region {
            Some(r) if rng.random_bool(0.5) && r.start < r.end.min(len) => rng.random_range(r.start..r.end.min(len)),
            _ if len == 0 => 0,
            _ => rng.random_range(0..len),
        };
        match rng.random_range(0..11) {
            0 | 1 if len > 0 => {
                let p = pos(rng);
                buf[p] ^= 1 << rng.random_range(0..8);
            }
            2 if len > 0 => {
                let p = pos(rng);
                buf[p] = [0u8, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'{', b'"', b'\n'][rng.random_range(0..10)];
            }
            3 if len >= 8 => {
                // An edge integer, 1 to 8 bytes, either byte order.
                let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
                let p = pos(rng).min(len - width);
                let v = EDGE_INTS[rng.random_range(0..EDGE_INTS.len())];
                if rng.random_bool(0.5) {
                    buf[p..p + width].copy_from_slice(&v.to_le_bytes()[..width]);
                } else {
                    buf[p..p + width].copy_from_slice(&v.to_be_bytes()[8 - width..]);
                }
            }
            4 => {
                let p = pos(rng);
                buf.truncate(p);
            }
            5 => {
                // Extend with noise, or with a copy of a chunk (a record, a header) of the input.
                let n = rng.random_range(1..4096usize);
                if len > 0 && rng.random_bool(0.5) {
                    let a = rng.random_range(0..len);
                    let chunk = buf[a..(a + n).min(len)].to_vec();
                    buf.extend_from_slice(&chunk);
                } else {
                    buf.extend((0..n).map(|_| rng.random::<u8>()));
                }
            }
            6 if len > 0 => {
                let a = pos(rng);
                let b = (a + rng.random_range(1..=len.min(4096))).min(len);
                buf.drain(a..b);
            }
            7 if len > 0 => {
                let a = pos(rng);
                let b = (a + rng.random_range(1..=len.min(4096))).min(len);
                let chunk = buf[a..b].to_vec();
                let at = rng.random_range(0..=len);
                let _ = buf.splice(at..at, chunk);
            }
            8 => {
                // Splice: this input's head, another seed's tail.
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = if len == 0 { 0 } else { pos(rng) };
                let from = rng.random_range(0..=other.len());
                buf.truncate(cut);
                buf.extend_from_slice(&other[from..]);
            }
            9 if len > 0 => {
                // Replace a run of ASCII digits near a position by an edge number.
                let p = pos(rng);
                if let Some(start) = (p..len).find(|&i| buf[i].is_ascii_digit()) {
                    let end = (start..len).find(|&i| !buf[i].is_ascii_digit()).unwrap_or(len);
                    let n = EDGE_NUMBERS[rng.random_range(0..EDGE_NUMBERS.len())];
                    let _ = buf.splice(start..end, n.bytes());
                }
            }
            _ => match special {
                Some(f) => f(&mut buf, rng),
                None if len > 0 => {
                    let p = pos(rng);
                    buf[p] = rng.random();
                }
                None => buf.push(rng.random()),
            },
        }
    }
    buf
}

/// The JSON header of a safetensors file (after its 8-byte length).
fn safetensors_header(bytes: &[u8]) -> Option<Range<usize>> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    Some(0..usize::try_from(n).ok()?.saturating_add(8))
}

/// A burnpack's header and CBOR metadata (its size is a `u32` at bytes 6..10).
fn burnpack_header(bytes: &[u8]) -> Option<Range<usize>> {
    let n = u32::from_le_bytes(bytes.get(6..10)?.try_into().ok()?);
    Some(0..(n as usize).saturating_add(10))
}

/// A safetensors header length claiming anything from nothing to 2^64 - 1 bytes.
fn corrupt_u64_prefix(buf: &mut Vec<u8>, rng: &mut StdRng) {
    if buf.len() >= 8 {
        let v = match rng.random_range(0..3) {
            0 => EDGE_INTS[rng.random_range(0..EDGE_INTS.len())],
            // Off by a little: the header ends inside the JSON or the data.
            1 => u64::from_le_bytes(buf[..8].try_into().unwrap_or_default()).wrapping_add(rng.random_range(0..16)).wrapping_sub(8),
            _ => buf.len() as u64 + rng.random_range(0..16),
        };
        buf[..8].copy_from_slice(&v.to_le_bytes());
    }
}

/// A burnpack metadata size claiming an edge value or slightly more or less than it holds.
fn corrupt_burnpack_size(buf: &mut Vec<u8>, rng: &mut StdRng) {
    if buf.len() >= 10 {
        let old = u32::from_le_bytes(buf[6..10].try_into().unwrap_or_default());
        let v = match rng.random_range(0..3) {
            0 => EDGE_INTS[rng.random_range(0..EDGE_INTS.len())] as u32,
            1 => old.wrapping_add(rng.random_range(0..64)).wrapping_sub(32),
            _ => buf.len() as u32,
        };
        buf[6..10].copy_from_slice(&v.to_le_bytes());
        if rng.random_bool(0.2) {
            // The version field too.
            buf[4..6].copy_from_slice(&(rng.random::<u16>() % 4).to_le_bytes());
        }
    }
}

/// The offsets of the tar headers, walked by their size fields.
fn tar_headers(buf: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 512 <= buf.len() && buf[at] != 0 {
        out.push(at);
        let field = &buf[at + 124..at + 136];
        let text: String = field.iter().take_while(|b| (b'0'..=b'7').contains(b)).map(|&b| b as char).collect();
        let Ok(size) = u64::from_str_radix(&text, 8) else { break };
        let Some(next) = usize::try_from(size).ok().and_then(|s| s.checked_add(511)).map(|s| at + 512 + s / 512 * 512) else { break };
        at = next;
    }
    out
}

/// Corrupts a field of one tar header (size, type, name, mode, GNU base-256 size) and, most
/// of the time, fixes its checksum so the corruption gets past it.
fn corrupt_tar(buf: &mut Vec<u8>, rng: &mut StdRng) {
    let headers = tar_headers(buf);
    if headers.is_empty() {
        return;
    }
    let h = headers[rng.random_range(0..headers.len())];
    let block = &mut buf[h..h + 512];
    match rng.random_range(0..5) {
        0 => {
            // Size: an edge octal number.
            let n = ["77777777777", "00000000000", "30730001", "99999999999", "", "1"][rng.random_range(0..6)];
            block[124..136].fill(0);
            block[124..124 + n.len()].copy_from_slice(n.as_bytes());
        }
        1 => {
            // GNU base-256 size: a huge binary number.
            block[124] = 0x80;
            for b in &mut block[125..136] {
                *b = if rng.random_bool(0.5) { 0xff } else { rng.random() };
            }
        }
        2 => block[156] = b"0125LKxgS\0"[rng.random_range(0..10)],
        3 => {
            // Name: traversal, long, a shard's, or non-UTF-8.
            let n: &[u8] = [
                &b"../../data_batch_1.bin"[..],
                b"test_batch.bin",
                b"batches.meta.txt",
                b"/train.bin",
                b"\xff\xfe.bin",
                &[b'a'; 100],
            ][rng.random_range(0..6)];
            block[..100].fill(0);
            block[..n.len()].copy_from_slice(n);
        }
        _ => {
            let p = rng.random_range(0..512);
            block[p] = rng.random();
        }
    }
    if rng.random_bool(0.8) {
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| b as u32).sum();
        let text = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(&text.as_bytes()[..8]);
    }
}

/// Corrupts gzip's header flags and optional fields, or its CRC and length trailer.
fn corrupt_gzip(buf: &mut Vec<u8>, rng: &mut StdRng) {
    let len = buf.len();
    if len < 18 {
        return;
    }
    match rng.random_range(0..4) {
        // FLG: FTEXT, FHCRC, FEXTRA, FNAME, FCOMMENT and reserved bits.
        0 => buf[3] = rng.random(),
        // FEXTRA with a length that runs past the file.
        1 => {
            buf[3] |= 4;
            let xlen = [0u16, 1, 0xffff, 0x8000][rng.random_range(0..4)];
            let _ = buf.splice(10..10, xlen.to_le_bytes());
        }
        // CRC32 and ISIZE.
        2 => {
            let v = EDGE_INTS[rng.random_range(0..EDGE_INTS.len())] as u32;
            let at = len - 8 + 4 * rng.random_range(0..2);
            buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        // Two members back to back, or a truncated second.
        _ => {
            let copy = buf.clone();
            let cut = rng.random_range(0..=copy.len());
            buf.extend_from_slice(&copy[..cut]);
        }
    }
}

/// Runs `cases` cases of every parser in `parsers` and returns their reports.
pub fn run_all(fuzzer: &Fuzzer, parsers: &[Parser], seed: u64, cases: u64) -> Vec<Report> {
    parsers.iter().map(|&p| fuzzer.run(p, seed, cases)).collect()
}
