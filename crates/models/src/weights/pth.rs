//! PyTorch checkpoint reader: the zip format (`torch.save` since 1.6) and the legacy
//! non-zip format (before 1.6, or `_use_new_zipfile_serialization=False`).
//!
//! Both formats pickle the saved object with tensors as calls of
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` whose storage is a
//! persistent id `('storage', <dtype>Storage, key, location, numel[, view])`. The zip format
//! keeps each storage in the entry `<dir>/data/<key>`; the legacy format is a run of pickles
//! (magic number, protocol version 1001, system info, the object, the sorted list of storage
//! keys) followed by each storage as a little-endian `i64` element count and its raw bytes, in
//! that list's order (torch/serialization.py, `_legacy_save`). The pickles are parsed with
//! candle's pickle machine; tensors are rebuilt here, strided views included.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result, format_error};

/// Which PyTorch serialization a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PthFormat {
    /// A zip archive (PyTorch ≥ 1.6 default).
    Zip,
    /// The legacy stream of pickles followed by raw storages.
    Legacy,
}

/// The pickled `MAGIC_NUMBER` of the legacy format (a Python long, pickled with LONG1).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// Storage element types; those candle cannot hold are still sized so they can be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageType {
    Known(DType),
    /// Name and element size of a storage candle has no dtype for.
    Other(&'static str, usize),
}

impl StorageType {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Known(DType::F32),
            "DoubleStorage" => Self::Known(DType::F64),
            "HalfStorage" => Self::Known(DType::F16),
            "BFloat16Storage" => Self::Known(DType::BF16),
            "ByteStorage" => Self::Known(DType::U8),
            "LongStorage" => Self::Known(DType::I64),
            "IntStorage" => Self::Other("int32", 4),
            "ShortStorage" => Self::Other("int16", 2),
            "CharStorage" => Self::Other("int8", 1),
            "BoolStorage" => Self::Other("bool", 1),
            "ComplexFloatStorage" => Self::Other("complex64", 8),
            "ComplexDoubleStorage" => Self::Other("complex128", 16),
            "UntypedStorage" => Self::Known(DType::U8),
            _ => return None,
        })
    }

    fn elem_size(&self) -> usize {
        match self {
            Self::Known(dtype) => dtype.size_in_bytes(),
            Self::Other(_, size) => *size,
        }
    }
}

/// A tensor's place in a storage.
#[derive(Debug, Clone)]
struct TensorSpec {
    storage_key: String,
    storage_type: StorageType,
    /// Offset of the view into its root storage, in elements.
    view_offset: usize,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn as_usize(obj: &Object) -> Option<usize> {
    match obj {
        Object::Int(v) => usize::try_from(*v).ok(),
        Object::Long(v) => usize::try_from(*v).ok(),
        _ => None,
    }
}

fn as_usizes(obj: &Object) -> Option<Vec<usize>> {
    match obj {
        Object::Tuple(items) | Object::List(items) => items.iter().map(as_usize).collect(),
        _ => None,
    }
}

fn as_str(obj: &Object) -> Option<&str> {
    match obj {
        Object::Unicode(s) => Some(s),
        _ => None,
    }
}

/// `('storage', type, key, location, numel[, view_metadata])` → (key, type, view offset).
fn parse_storage(obj: &Object) -> Option<(String, StorageType, usize)> {
    let Object::PersistentLoad(id) = obj else {
        return None;
    };
    let Object::Tuple(items) = id.as_ref() else {
        return None;
    };
    if items.len() < 5 || as_str(&items[0]) != Some("storage") {
        return None;
    }
    let storage_type = match &items[1] {
        Object::Class { class_name, .. } => StorageType::from_class(class_name)?,
        _ => return None,
    };
    let key = match &items[2] {
        Object::Unicode(s) => s.clone(),
        other => as_usize(other)?.to_string(),
    };
    let view_offset = match items.get(5) {
        Some(Object::Tuple(view)) if view.len() == 3 => as_usize(&view[1])?,
        _ => 0,
    };
    Some((key, storage_type, view_offset))
}

/// Recognises the pickled forms of a tensor.
fn parse_tensor(obj: &Object) -> Option<TensorSpec> {
    let Object::Reduce { callable, args } = obj else {
        return None;
    };
    let Object::Class {
        module_name,
        class_name,
    } = callable.as_ref()
    else {
        return None;
    };
    let args = match args.as_ref() {
        Object::Tuple(items) => items,
        _ => return None,
    };
    match (module_name.as_str(), class_name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") if args.len() >= 4 => {
            let (storage_key, storage_type, view_offset) = parse_storage(&args[0])?;
            Some(TensorSpec {
                storage_key,
                storage_type,
                view_offset,
                offset: as_usize(&args[1])?,
                size: as_usizes(&args[2])?,
                stride: as_usizes(&args[3])?,
            })
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            parse_tensor(args.first()?)
        }
        // Tensor subclasses: (func, type, func_args, state).
        ("torch._tensor", "_rebuild_from_type_v2") if args.len() >= 3 => {
            parse_tensor(&Object::Reduce {
                callable: Box::new(args[0].clone()),
                args: Box::new(args[2].clone()),
            })
        }
        _ => None,
    }
}

/// The `(name, tensor)` entries of a dict that holds at least one tensor.
fn tensor_entries(obj: &Object) -> Option<Vec<(String, TensorSpec)>> {
    let Object::Dict(entries) = obj else {
        return None;
    };
    let tensors: Vec<(String, TensorSpec)> = entries
        .iter()
        .filter_map(|(k, v)| Some((as_str(k)?.to_string(), parse_tensor(v)?)))
        .collect();
    (!tensors.is_empty()).then_some(tensors)
}

/// Where the state dict sat in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nesting {
    /// The checkpoint is the state dict.
    TopLevel,
    /// Under this top-level key.
    Key(String),
}

/// Nesting keys tried in order when the top level is not a state dict.
pub const NESTING_KEYS: [&str; 3] = ["state_dict", "model_state_dict", "model"];

fn find_state_dict(
    path: &Path,
    top: &Object,
    key: Option<&str>,
) -> Result<(Vec<(String, TensorSpec)>, Nesting)> {
    let entries = match top {
        Object::Dict(entries) => entries,
        _ => {
            return Err(format_error(
                path,
                "the checkpoint is not a dict of tensors",
            ));
        }
    };
    let lookup = |wanted: &str| {
        entries
            .iter()
            .find(|(k, _)| as_str(k) == Some(wanted))
            .map(|(_, v)| v)
    };
    if let Some(key) = key {
        let value =
            lookup(key).ok_or_else(|| format_error(path, format!("no top-level key {key:?}")))?;
        let tensors = tensor_entries(value)
            .ok_or_else(|| format_error(path, format!("top-level key {key:?} holds no tensors")))?;
        return Ok((tensors, Nesting::Key(key.to_string())));
    }
    // A nesting key wins over tensors at the top level: training checkpoints keep a few
    // tensors beside the state dict (DeepAugment's tensor-valued `best_acc1`).
    for key in NESTING_KEYS {
        if let Some(tensors) = lookup(key).and_then(tensor_entries) {
            return Ok((tensors, Nesting::Key(key.to_string())));
        }
    }
    if let Some(tensors) = tensor_entries(top) {
        return Ok((tensors, Nesting::TopLevel));
    }
    let keys: Vec<String> = entries
        .iter()
        .map(|(k, _)| match k {
            Object::Unicode(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    Err(format_error(
        path,
        format!(
            "no state dict found: the top level holds no tensors and none of {NESTING_KEYS:?} does \
             (top-level keys: {keys:?})"
        ),
    ))
}

/// Tensors read from a `.pth` file, in the state dict's order.
#[derive(Debug)]
pub struct PthContents {
    /// The serialization format.
    pub format: PthFormat,
    /// Where the state dict was found.
    pub nesting: Nesting,
    /// Named tensors (CPU).
    pub tensors: Vec<(String, Tensor)>,
    /// Entries skipped because candle has no dtype for them (name, PyTorch dtype).
    pub skipped: Vec<(String, String)>,
}

fn io_error(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn unpickle<R: BufRead>(path: &Path, reader: &mut R, what: &str) -> Result<Object> {
    let mut stack = Stack::empty();
    stack
        .read_loop(reader)
        .map_err(|e| format_error(path, format!("cannot parse the {what} pickle: {e}")))?;
    stack
        .finalize()
        .map_err(|e| format_error(path, format!("empty {what} pickle: {e}")))
}

/// Reads the state dict of a PyTorch checkpoint, in either format. `key` picks a top-level
/// entry; without it the first of [`NESTING_KEYS`] that holds tensors is used, else the top
/// level itself.
pub fn read_pth(path: &Path, key: Option<&str>) -> Result<PthContents> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut head = [0u8; 4];
    let got = file.read(&mut head).map_err(|e| io_error(path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error(path, e))?;
    if got == 4 && head == *b"PK\x03\x04" {
        read_zip(path, file, key)
    } else if got >= 1 && head[0] == 0x80 {
        read_legacy(path, file, key)
    } else {
        Err(format_error(
            path,
            "not a PyTorch checkpoint (neither a zip archive nor a pickle stream)",
        ))
    }
}

/// One stored entry of a zip archive: where its bytes start and how many there are.
#[derive(Debug, Clone)]
struct ZipEntry {
    name: String,
    data_offset: u64,
    size: u64,
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Lists the entries of the zip archive `torch.save` writes (entries stored, not
/// compressed). PyTorch's writer adds zip64 records that the `zip` crate rejects, so the
/// central directory is read here: end record, zip64 fields where a value is saturated,
/// central headers, and each local header for the data offset.
fn zip_entries(path: &Path, file: &mut std::fs::File) -> Result<Vec<ZipEntry>> {
    let bad = |what: &str| format_error(path, format!("zip archive: {what}"));
    let len = file.seek(SeekFrom::End(0)).map_err(|e| io_error(path, e))?;
    let tail_len = len.min(65_557 + 20 + 56);
    file.seek(SeekFrom::Start(len - tail_len))
        .map_err(|e| io_error(path, e))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail).map_err(|e| io_error(path, e))?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == *b"PK\x05\x06")
        .ok_or_else(|| bad("no end-of-central-directory record"))?;
    let mut count = le16(&tail, eocd + 10);
    let mut cd_size = le32(&tail, eocd + 12);
    let mut cd_offset = le32(&tail, eocd + 16);
    // zip64: the locator sits right before the end record and points at the zip64 record.
    if eocd >= 20 && tail[eocd - 20..eocd - 16] == *b"PK\x06\x07" {
        let record = le64(&tail, eocd - 20 + 8);
        if record + 56 <= len {
            let mut z = [0u8; 56];
            file.seek(SeekFrom::Start(record))
                .map_err(|e| io_error(path, e))?;
            file.read_exact(&mut z).map_err(|e| io_error(path, e))?;
            if z[..4] == *b"PK\x06\x06" {
                if count == 0xFFFF {
                    count = le64(&z, 32);
                }
                if cd_size == 0xFFFF_FFFF {
                    cd_size = le64(&z, 40);
                }
                if cd_offset == 0xFFFF_FFFF {
                    cd_offset = le64(&z, 48);
                }
            }
        }
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err(bad("central directory runs past the end of the file"));
    }
    let mut cd = vec![0u8; cd_size as usize];
    file.seek(SeekFrom::Start(cd_offset))
        .map_err(|e| io_error(path, e))?;
    file.read_exact(&mut cd).map_err(|e| io_error(path, e))?;
    let mut entries = Vec::with_capacity(count as usize);
    let mut at = 0usize;
    for _ in 0..count {
        if at + 46 > cd.len() || cd[at..at + 4] != *b"PK\x01\x02" {
            return Err(bad("malformed central directory header"));
        }
        let method = le16(&cd, at + 10);
        let mut compressed = le32(&cd, at + 20);
        let mut size = le32(&cd, at + 24);
        let name_len = le16(&cd, at + 28) as usize;
        let extra_len = le16(&cd, at + 30) as usize;
        let comment_len = le16(&cd, at + 32) as usize;
        let mut local = le32(&cd, at + 42);
        let end = at + 46 + name_len + extra_len + comment_len;
        if end > cd.len() {
            return Err(bad("malformed central directory header"));
        }
        let name = String::from_utf8_lossy(&cd[at + 46..at + 46 + name_len]).into_owned();
        // zip64 extra field: the saturated values, in this order.
        let mut extra = &cd[at + 46 + name_len..at + 46 + name_len + extra_len];
        while extra.len() >= 4 {
            let id = le16(extra, 0);
            let n = le16(extra, 2) as usize;
            let body = &extra[4..(4 + n).min(extra.len())];
            if id == 1 {
                let mut k = 0;
                for field in [&mut size, &mut compressed, &mut local] {
                    if *field == 0xFFFF_FFFF && k + 8 <= body.len() {
                        *field = le64(body, k);
                        k += 8;
                    }
                }
            }
            extra = &extra[(4 + n).min(extra.len())..];
        }
        if method != 0 || compressed != size {
            return Err(bad(&format!(
                "entry {name} is compressed (method {method}); torch.save stores entries"
            )));
        }
        let mut header = [0u8; 30];
        file.seek(SeekFrom::Start(local))
            .map_err(|e| io_error(path, e))?;
        file.read_exact(&mut header)
            .map_err(|e| io_error(path, e))?;
        if header[..4] != *b"PK\x03\x04" {
            return Err(bad(&format!("entry {name}: malformed local header")));
        }
        let data_offset = local + 30 + le16(&header, 26) + le16(&header, 28);
        if data_offset + size > len {
            return Err(bad(&format!("entry {name} runs past the end of the file")));
        }
        entries.push(ZipEntry {
            name,
            data_offset,
            size,
        });
        at = end;
    }
    Ok(entries)
}

fn read_entry(path: &Path, file: &mut std::fs::File, entry: &ZipEntry) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; entry.size as usize];
    file.seek(SeekFrom::Start(entry.data_offset))
        .map_err(|e| io_error(path, e))?;
    file.read_exact(&mut bytes).map_err(|e| io_error(path, e))?;
    Ok(bytes)
}

fn read_zip(path: &Path, mut file: std::fs::File, key: Option<&str>) -> Result<PthContents> {
    let entries = zip_entries(path, &mut file)?;
    let pickle = entries
        .iter()
        .find(|e| e.name.ends_with("data.pkl"))
        .ok_or_else(|| format_error(path, "zip archive without a data.pkl entry"))?;
    let dir = pickle.name.trim_end_matches("data.pkl").to_string();
    let top = {
        let bytes = read_entry(path, &mut file, pickle)?;
        unpickle(path, &mut std::io::Cursor::new(bytes), "data.pkl")?
    };
    let (specs, nesting) = find_state_dict(path, &top, key)?;
    let by_name: HashMap<&str, &ZipEntry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, spec) in &specs {
        if storages.contains_key(&spec.storage_key) {
            continue;
        }
        let name = format!("{dir}data/{}", spec.storage_key);
        let entry = by_name
            .get(name.as_str())
            .ok_or_else(|| format_error(path, format!("storage entry {name} is missing")))?;
        storages.insert(
            spec.storage_key.clone(),
            read_entry(path, &mut file, entry)?,
        );
    }
    build_tensors(path, PthFormat::Zip, nesting, specs, &storages)
}

fn read_legacy(path: &Path, file: std::fs::File, key: Option<&str>) -> Result<PthContents> {
    let mut reader = BufReader::new(file);
    // The magic number is a 10-byte long, which candle's LONG1 cannot hold: compare bytes.
    let mut magic = [0u8; 15];
    let mut filled = 0;
    while filled < magic.len() {
        match reader
            .read(&mut magic[filled..])
            .map_err(|e| io_error(path, e))?
        {
            0 => break,
            n => filled += n,
        }
    }
    if filled < magic.len()
        || magic[0] != 0x80
        || magic[2] != 0x8a
        || magic[3] != 10
        || magic[4..14] != LEGACY_MAGIC
        || magic[14] != b'.'
    {
        return Err(format_error(
            path,
            "a pickle stream without PyTorch's legacy magic number (a plain pickle, or the \
             pre-0.4 tar format, which is not supported)",
        ));
    }
    let protocol = unpickle(path, &mut reader, "protocol version")?;
    let version = match protocol {
        Object::Int(v) => i64::from(v),
        Object::Long(v) => v,
        other => {
            return Err(format_error(
                path,
                format!("unexpected protocol version {other:?}"),
            ));
        }
    };
    if version != LEGACY_PROTOCOL_VERSION {
        return Err(format_error(
            path,
            format!("unsupported legacy protocol version {version}"),
        ));
    }
    let sys_info = unpickle(path, &mut reader, "system info")?;
    if let Object::Dict(entries) = &sys_info
        && entries
            .iter()
            .any(|(k, v)| as_str(k) == Some("little_endian") && *v == Object::Bool(false))
    {
        return Err(format_error(
            path,
            "saved on a big-endian machine: not supported",
        ));
    }
    let top = unpickle(path, &mut reader, "checkpoint")?;
    let keys_obj = unpickle(path, &mut reader, "storage keys")?;
    let storage_keys: Vec<String> = match &keys_obj {
        Object::List(items) | Object::Tuple(items) => items
            .iter()
            .map(|k| match k {
                Object::Unicode(s) => Some(s.clone()),
                other => as_usize(other).map(|v| v.to_string()),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format_error(path, "storage key list holds a non-string"))?,
        other => {
            return Err(format_error(
                path,
                format!("expected a list of storage keys, got {other:?}"),
            ));
        }
    };
    let (specs, nesting) = find_state_dict(path, &top, key)?;
    // Every storage in the file must be sized to be skipped; element sizes come from the
    // persistent ids anywhere in the checkpoint (optimizer state included).
    let mut elem_sizes: HashMap<String, usize> = HashMap::new();
    collect_storage_sizes(&top, &mut elem_sizes);
    let wanted: BTreeSet<&str> = specs.iter().map(|(_, s)| s.storage_key.as_str()).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for storage_key in &storage_keys {
        let mut count = [0u8; 8];
        reader.read_exact(&mut count).map_err(|e| {
            format_error(path, format!("truncated before storage {storage_key}: {e}"))
        })?;
        let numel = u64::from_le_bytes(count) as usize;
        let elem_size = *elem_sizes.get(storage_key).ok_or_else(|| {
            format_error(
                path,
                format!("storage {storage_key} has no type in the checkpoint"),
            )
        })?;
        let nbytes = numel.checked_mul(elem_size).ok_or_else(|| {
            format_error(path, format!("storage {storage_key} is impossibly large"))
        })?;
        if wanted.contains(storage_key.as_str()) {
            let mut bytes = vec![0u8; nbytes];
            reader.read_exact(&mut bytes).map_err(|e| {
                format_error(path, format!("truncated in storage {storage_key}: {e}"))
            })?;
            storages.insert(storage_key.clone(), bytes);
        } else {
            reader
                .seek_relative(nbytes as i64)
                .map_err(|e| io_error(path, e))?;
        }
    }
    build_tensors(path, PthFormat::Legacy, nesting, specs, &storages)
}

fn collect_storage_sizes(obj: &Object, out: &mut HashMap<String, usize>) {
    if let Some((key, storage_type, _)) = parse_storage(obj) {
        out.entry(key).or_insert(storage_type.elem_size());
        return;
    }
    match obj {
        Object::Tuple(items) | Object::List(items) => {
            items.iter().for_each(|o| collect_storage_sizes(o, out));
        }
        Object::Dict(entries) => entries.iter().for_each(|(k, v)| {
            collect_storage_sizes(k, out);
            collect_storage_sizes(v, out);
        }),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            collect_storage_sizes(callable, out);
            collect_storage_sizes(args, out);
        }
        Object::PersistentLoad(inner) => collect_storage_sizes(inner, out),
        _ => {}
    }
}

fn build_tensors(
    path: &Path,
    format: PthFormat,
    nesting: Nesting,
    specs: Vec<(String, TensorSpec)>,
    storages: &HashMap<String, Vec<u8>>,
) -> Result<PthContents> {
    let mut tensors = Vec::with_capacity(specs.len());
    let mut skipped = Vec::new();
    for (name, spec) in specs {
        let dtype = match spec.storage_type {
            StorageType::Known(dtype) => dtype,
            StorageType::Other(torch_name, _) => {
                skipped.push((name, torch_name.to_string()));
                continue;
            }
        };
        let bytes = storages.get(&spec.storage_key).ok_or_else(|| {
            format_error(
                path,
                format!("{name}: storage {} is missing", spec.storage_key),
            )
        })?;
        let data = gather(&spec, bytes, dtype.size_in_bytes()).ok_or_else(|| {
            format_error(
                path,
                format!(
                    "{name}: view {:?}/{:?}+{} runs past its storage",
                    spec.size, spec.stride, spec.offset
                ),
            )
        })?;
        let tensor = Tensor::from_raw_buffer(&data, dtype, &spec.size, &Device::Cpu)?;
        tensors.push((name, tensor));
    }
    Ok(PthContents {
        format,
        nesting,
        tensors,
        skipped,
    })
}

/// Copies a (possibly strided) view out of its storage into contiguous bytes.
fn gather(spec: &TensorSpec, bytes: &[u8], elem: usize) -> Option<Vec<u8>> {
    let numel: usize = spec.size.iter().product();
    let base = spec.view_offset + spec.offset;
    if spec.size.len() != spec.stride.len() {
        return None;
    }
    if numel == 0 {
        return Some(Vec::new());
    }
    // Contiguous (row-major) views are one slice.
    let mut expected = 1;
    let mut contiguous = true;
    for (&size, &stride) in spec.size.iter().zip(&spec.stride).rev() {
        if size != 1 && stride != expected {
            contiguous = false;
        }
        expected *= size;
    }
    if contiguous {
        let start = base * elem;
        return bytes.get(start..start + numel * elem).map(<[u8]>::to_vec);
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut index = vec![0usize; spec.size.len()];
    for _ in 0..numel {
        let at = base
            + index
                .iter()
                .zip(&spec.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(bytes.get(at * elem..(at + 1) * elem)?);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < spec.size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_reads_transposed_views() {
        // A 2×3 float32 storage [0..6) viewed as its 3×2 transpose.
        let bytes: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let spec = TensorSpec {
            storage_key: "0".into(),
            storage_type: StorageType::Known(DType::F32),
            view_offset: 0,
            offset: 0,
            size: vec![3, 2],
            stride: vec![1, 3],
        };
        let out = gather(&spec, &bytes, 4).unwrap();
        let values: Vec<f32> = out
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values, [0., 3., 1., 4., 2., 5.]);
        let past_end = TensorSpec { offset: 1, ..spec };
        assert!(gather(&past_end, &bytes, 4).is_none());
    }

    #[test]
    fn files_that_are_not_checkpoints_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pth");
        std::fs::write(&path, b"hello").unwrap();
        let err = read_pth(&path, None).unwrap_err().to_string();
        assert!(
            err.contains("x.pth") && err.contains("not a PyTorch checkpoint"),
            "{err}"
        );
        // A pickle without the magic number.
        std::fs::write(&path, [0x80, 0x02, b'K', 1, b'.']).unwrap();
        let err = read_pth(&path, None).unwrap_err().to_string();
        assert!(err.contains("magic"), "{err}");
    }
}
