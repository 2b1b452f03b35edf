//! CIFAR-10 in its official binary layout: parsing, validation and the tarball reader.
//!
//! Images stay as `u8` (3 planes of 32x32, red then green then blue) so the whole data set
//! costs 184 MB instead of 737 MB as `f32`; batches are converted when they are built.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

/// Bytes per image: 3 colour planes of 32x32.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes per record: one label byte, then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Records in every official shard.
pub const SHARD_RECORDS: usize = 10_000;
/// Size of one official shard; also the cap on what one tar entry may inflate to.
pub const SHARD_BYTES: usize = SHARD_RECORDS * RECORD_BYTES;
/// Cap on the whole inflated tar stream: seven shards. The official archive inflates to
/// 184,391,680 bytes (six shards, the class names, tar headers); a gzip bomb made of many
/// capped entries stops here, so a tarball never holds more than this in memory (plus
/// `read_to_end`'s spare capacity on the last entry).
pub const MAX_ARCHIVE_BYTES: u64 = 7 * SHARD_BYTES as u64;
/// Number of classes.
pub const NUM_CLASSES: usize = 10;
/// The official train shard names, in order.
pub const TRAIN_SHARDS: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The official test shard name.
pub const TEST_SHARD: &str = "test_batch.bin";
/// The class-name file.
pub const META_FILE: &str = "batches.meta.txt";

/// The class names used when `batches.meta.txt` is absent.
pub const DEFAULT_CLASS_NAMES: [&str; NUM_CLASSES] = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
];

/// Everything that can be wrong with data a user hands us.
#[derive(Debug, Clone, PartialEq)]
pub enum DataError {
    /// The length is not a whole number of 3073-byte records.
    NotRecords { name: String, len: usize },
    /// An official shard whose record count is not 10,000.
    WrongRecordCount { name: String, records: usize },
    /// A label byte outside 0..=9.
    BadLabel { name: String, record: usize, label: u8 },
    /// A shard named twice.
    Duplicate { name: String },
    /// A required shard is absent.
    Missing { names: Vec<String> },
    /// The file is not gzip, or the gzip stream is corrupt or truncated.
    NotGzip(String),
    /// The tar stream is corrupt or truncated.
    BadTar(String),
    /// A tar entry that inflates beyond the size of a CIFAR shard.
    TooLarge { name: String },
    /// The whole archive inflates beyond [`MAX_ARCHIVE_BYTES`].
    ArchiveTooLarge,
    /// Anything else (I/O, network).
    Other(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::NotRecords { name, len } => write!(
                f,
                "{name}: {len} bytes is not a whole number of CIFAR-10 records (3073 bytes each)"
            ),
            DataError::WrongRecordCount { name, records } => write!(
                f,
                "{name}: holds {records} records; an official shard holds exactly 10000 (truncated or wrong file?)"
            ),
            DataError::BadLabel { name, record, label } => write!(
                f,
                "{name}: record {record} has label {label}; CIFAR-10 labels are 0 to 9 (is this CIFAR-100 or another file?)"
            ),
            DataError::Duplicate { name } => write!(f, "{name} was given twice"),
            DataError::Missing { names } => write!(f, "missing shard(s): {}", names.join(", ")),
            DataError::NotGzip(e) => write!(
                f,
                "not a valid gzip file ({e}); expected cifar-10-binary.tar.gz or .bin shards"
            ),
            DataError::BadTar(e) => write!(f, "corrupt or truncated tar archive ({e})"),
            DataError::TooLarge { name } => write!(
                f,
                "{name}: inflates beyond {SHARD_BYTES} bytes, larger than any CIFAR-10 shard; refused"
            ),
            DataError::ArchiveTooLarge => write!(
                f,
                "the archive inflates beyond {MAX_ARCHIVE_BYTES} bytes, more than CIFAR-10 holds; refused"
            ),
            DataError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DataError {}

/// A set of labelled 32x32 RGB images, planar `u8`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    /// `len() * IMAGE_BYTES` bytes, image after image.
    pub images: Vec<u8>,
    /// One label (0..=9) per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Parses raw records, checking the length and every label.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, DataError> {
        if bytes.is_empty() || bytes.len() % RECORD_BYTES != 0 {
            return Err(DataError::NotRecords { name: name.into(), len: bytes.len() });
        }
        let n = bytes.len() / RECORD_BYTES;
        let mut split = Split {
            images: Vec::with_capacity(n * IMAGE_BYTES),
            labels: Vec::with_capacity(n),
        };
        for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let label = chunk[0];
            if label as usize >= NUM_CLASSES {
                return Err(DataError::BadLabel { name: name.into(), record, label });
            }
            split.labels.push(label);
            split.images.extend_from_slice(&chunk[1..]);
        }
        Ok(split)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The planar pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Appends another split.
    pub fn extend(&mut self, other: &Split) {
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
    }

    /// The first `n` images (all when `n` is larger).
    pub fn take(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * IMAGE_BYTES].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }
}

/// The whole data set: train and test splits and class names.
#[derive(Clone, Debug, PartialEq)]
pub struct Cifar10 {
    pub train: Split,
    pub test: Split,
    pub class_names: Vec<String>,
}

impl Cifar10 {
    /// Reduces both splits for quick runs (`None` keeps all).
    pub fn subset(&self, train: Option<usize>, test: Option<usize>) -> Cifar10 {
        Cifar10 {
            train: train.map_or_else(|| self.train.clone(), |n| self.train.take(n)),
            test: test.map_or_else(|| self.test.clone(), |n| self.test.take(n)),
            class_names: self.class_names.clone(),
        }
    }
}

/// Parses `batches.meta.txt`: one class name a line, empty lines ignored.
pub fn parse_class_names(text: &str) -> Vec<String> {
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() == NUM_CLASSES {
        names
    } else {
        DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect()
    }
}

/// Collects shards by file name, checks them, and builds the data set.
///
/// Official shards must hold exactly 10,000 records. Other `.bin` files (the `sample/`
/// subsets, for instance `train_2000.bin` / `test_500.bin`) are accepted when their name says
/// `train` or `test`, so quick runs can use small files.
#[derive(Default)]
pub struct ShardSet {
    shards: BTreeMap<String, Split>,
    class_names: Option<Vec<String>>,
}

/// Which split a file name belongs to, if any.
pub fn shard_kind(name: &str) -> Option<&'static str> {
    let base = name.rsplit('/').next().unwrap_or(name);
    if !base.ends_with(".bin") {
        return None;
    }
    if base.starts_with("data_batch_") || base.starts_with("train") {
        Some("train")
    } else if base.starts_with("test") {
        Some("test")
    } else {
        None
    }
}

impl ShardSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one file by name. Unknown names are ignored (returns `Ok(false)`).
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> Result<bool, DataError> {
        let base = name.rsplit('/').next().unwrap_or(name).to_string();
        if base == META_FILE {
            self.class_names = Some(parse_class_names(&String::from_utf8_lossy(bytes)));
            return Ok(true);
        }
        if shard_kind(&base).is_none() {
            return Ok(false);
        }
        if self.shards.contains_key(&base) {
            return Err(DataError::Duplicate { name: base });
        }
        let split = Split::parse(&base, bytes)?;
        let official = TRAIN_SHARDS.contains(&base.as_str()) || base == TEST_SHARD;
        if official && split.len() != SHARD_RECORDS {
            return Err(DataError::WrongRecordCount { name: base, records: split.len() });
        }
        self.shards.insert(base, split);
        Ok(true)
    }

    /// Names of the shards added so far.
    pub fn names(&self) -> Vec<String> {
        self.shards.keys().cloned().collect()
    }

    /// Checks completeness and concatenates the splits (train shards in name order).
    pub fn finish(self) -> Result<Cifar10, DataError> {
        let official_train = TRAIN_SHARDS.iter().any(|s| self.shards.contains_key(*s));
        let mut missing = Vec::new();
        if official_train {
            for s in TRAIN_SHARDS {
                if !self.shards.contains_key(s) {
                    missing.push(s.to_string());
                }
            }
        }
        let has = |kind: &str| self.shards.keys().any(|k| shard_kind(k) == Some(kind));
        if !has("train") && missing.is_empty() {
            missing.push("a train shard (data_batch_1.bin ... data_batch_5.bin)".into());
        }
        if !has("test") {
            missing.push(TEST_SHARD.to_string());
        }
        if !missing.is_empty() {
            return Err(DataError::Missing { names: missing });
        }
        let mut train = Split::default();
        let mut test = Split::default();
        for (name, split) in &self.shards {
            match shard_kind(name) {
                Some("train") => train.extend(split),
                _ => test.extend(split),
            }
        }
        Ok(Cifar10 {
            train,
            test,
            class_names: self.class_names.unwrap_or_else(|| {
                DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect()
            }),
        })
    }
}

/// Counts the bytes a reader hands out, so progress can be shown on the compressed stream.
pub struct CountingReader<R> {
    inner: R,
    pub count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, count: Default::default() }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Reads `cifar-10-binary.tar.gz` (or a plain `.tar`) from any reader.
///
/// Entries are inflated one at a time and each is capped at [`SHARD_BYTES`]: a small file can
/// never expand into gigabytes. Entries that are not CIFAR-10 files are skipped unread; nothing
/// is ever written outside memory. `on_entry` is called after each file with its name, so
/// callers can show progress.
pub fn read_tarball<R: Read>(
    reader: R,
    mut on_entry: impl FnMut(&str),
) -> Result<Cifar10, DataError> {
    let mut header = [0u8; 2];
    let mut reader = std::io::BufReader::new(reader);
    let peek = {
        use std::io::BufRead;
        let buf = reader.fill_buf().map_err(|e| DataError::Other(e.to_string()))?;
        header[..buf.len().min(2)].copy_from_slice(&buf[..buf.len().min(2)]);
        buf.len()
    };
    if peek < 2 || header != [0x1f, 0x8b] {
        return Err(DataError::NotGzip("the file does not start with the gzip magic bytes".into()));
    }
    let gz = flate2::read::GzDecoder::new(reader);
    let capped = Capped { inner: gz, left: MAX_ARCHIVE_BYTES, hit: Default::default() };
    let hit = capped.hit.clone();
    // Whatever error the cap causes inside `tar`, report the cap.
    read_tar(capped, &mut on_entry).map_err(|e| if hit.get() { DataError::ArchiveTooLarge } else { e })
}

/// Hands out at most `left` bytes, then fails (and says so in `hit`): an archive of many
/// capped entries cannot fill memory.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // At the cap: only an exhausted stream may end here.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.hit.set(true);
            return Err(std::io::Error::other("archive exceeds the inflate cap"));
        }
        let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..n])?;
        self.left -= read as u64;
        Ok(read)
    }
}

fn read_tar<R: Read>(reader: R, on_entry: &mut impl FnMut(&str)) -> Result<Cifar10, DataError> {
    let mut archive = tar::Archive::new(reader);
    let mut shards = ShardSet::new();
    let entries = archive.entries().map_err(|e| classify_io(&e))?;
    let mut seen_any = false;
    for entry in entries {
        let entry = entry.map_err(|e| classify_io(&e))?;
        seen_any = true;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = name.rsplit('/').next().unwrap_or(&name).to_string();
        let wanted = base == META_FILE || shard_kind(&base).is_some();
        if !wanted || !entry.header().entry_type().is_file() {
            continue;
        }
        // Read at most one byte past the cap so an oversized entry is detected, not inflated.
        let mut bytes = Vec::new();
        entry
            .take(SHARD_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| classify_io(&e))?;
        if bytes.len() > SHARD_BYTES {
            return Err(DataError::TooLarge { name: base });
        }
        shards.add(&base, &bytes)?;
        on_entry(&base);
    }
    if !seen_any {
        return Err(DataError::BadTar("the archive holds no entries".into()));
    }
    shards.finish()
}

fn classify_io(e: &std::io::Error) -> DataError {
    let msg = e.to_string();
    if msg.contains("corrupt deflate") || msg.contains("invalid gzip") || msg.contains("deflate") {
        DataError::NotGzip(msg)
    } else {
        DataError::BadTar(msg)
    }
}

/// Loads a folder holding `.bin` shards (and optionally `batches.meta.txt`).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_folder(dir: &std::path::Path) -> Result<Cifar10, DataError> {
    let mut shards = ShardSet::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| DataError::Other(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == META_FILE || shard_kind(&name).is_some() {
            let bytes = std::fs::read(entry.path())
                .map_err(|e| DataError::Other(format!("{name}: {e}")))?;
            shards.add(&name, &bytes)?;
        }
    }
    shards.finish()
}

/// Loads a tarball or a folder, whichever the path is.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_path(path: &std::path::Path) -> Result<Cifar10, DataError> {
    if path.is_dir() {
        // The official tarball unpacks into `cifar-10-batches-bin/`; accept either level.
        let nested = path.join("cifar-10-batches-bin");
        read_folder(if nested.is_dir() { &nested } else { path })
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| DataError::Other(format!("{}: {e}", path.display())))?;
        read_tarball(file, |_| {})
    }
}

/// The official file names, fetched by default.
pub fn official_files() -> Vec<String> {
    let mut v: Vec<String> = TRAIN_SHARDS.iter().map(|s| s.to_string()).collect();
    v.push(TEST_SHARD.into());
    v.push(META_FILE.into());
    v
}
