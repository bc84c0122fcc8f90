//! Reading and writing whole ONNX models. Weights kept in external data files (the only way
//! past protobuf's 2 GiB limit, as SDXL-size UNets need) are memory-mapped on load, not
//! copied: every clone of the model, and every session built from it, shares the mapped pages.

use crate::error::{OnnxError, Result};
use crate::pb::tensor_proto::DataLocation;
use crate::pb::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use bitsearch_types::{write_atomically, write_atomically_with};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A loaded model: the protobuf, each tensor's bytes either its own or a slice of a mapped
/// external-data file.
#[derive(Debug, Clone)]
pub struct Model {
    pub proto: ModelProto,
    path: Option<PathBuf>,
    /// The external-data files the tensors were read from, mapped.
    mapped: Vec<MappedFile>,
}

/// One file, memory-mapped.
#[derive(Debug, Clone)]
struct MappedFile {
    /// Canonical: the key under which the process shares the mapping.
    path: PathBuf,
    bytes: Bytes,
}

/// The files this process has mapped and still uses: models read from one file share its
/// pages, so two loads of a model (the reference and a copy being probed) hold one copy of its
/// weights. Weak: a file is unmapped once no tensor refers to it.
static MAPPED: std::sync::Mutex<Vec<(PathBuf, Stamp, std::sync::Weak<memmap2::Mmap>)>> =
    std::sync::Mutex::new(Vec::new());

type Stamp = (u64, Option<std::time::SystemTime>);

/// A shared mapping as the owner of `Bytes`.
struct SharedMap(std::sync::Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where `save` puts tensor data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalData {
    /// Everything inside the .onnx file (fails past protobuf's 2 GiB limit).
    Inline,
    /// External only when the inline file would come near the 2 GiB limit.
    Auto,
    /// Tensors of at least `min_bytes` bytes go to `<file>.data` beside the model.
    Always { min_bytes: usize },
}

/// Inline protobuf files must stay under 2 GiB; keep a margin for the graph itself.
const INLINE_LIMIT_BYTES: usize = 1 << 30;
/// Below this size a tensor stays inline even when writing external data (shapes, scalars).
const AUTO_MIN_EXTERNAL_BYTES: usize = 1024;

impl Model {
    pub fn new(proto: ModelProto) -> Self {
        Self { proto, path: None, mapped: Vec::new() }
    }

    /// Maps an .onnx file and the external data files it references. Tensors stored inline are
    /// slices of the mapped .onnx file, external ones of their data file: nothing is copied.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = map(path).map_err(|source| OnnxError::Read { path: path.to_path_buf(), source })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut model = Self::decode(file.bytes.clone(), path)?;
        model.mapped = resolve_external(&mut model.proto, dir, path)?;
        model.mapped.push(file);
        model.path = Some(path.to_path_buf());
        Ok(model)
    }

    /// A model made from this one by editing its protobuf: tensors it keeps still lie in the
    /// same mapped files.
    pub fn derived(&self, proto: ModelProto) -> Self {
        Self { proto, path: None, mapped: self.mapped.clone() }
    }

    /// Decodes and checks a model held in memory; `label` names it in error messages.
    pub fn from_bytes(bytes: &[u8], label: &Path) -> Result<Self> {
        Self::decode(Bytes::copy_from_slice(bytes), label)
    }

    fn decode(bytes: Bytes, label: &Path) -> Result<Self> {
        let not_onnx = |reason: String| OnnxError::NotOnnx { path: label.to_path_buf(), reason };
        if bytes.is_empty() {
            return Err(not_onnx("the file is empty".into()));
        }
        let proto = ModelProto::decode(bytes)
            .map_err(|e| not_onnx(format!("protobuf decoding failed ({e}); the file is truncated or not ONNX")))?;
        let graph = proto.graph.as_ref().ok_or_else(|| not_onnx("it has no graph".into()))?;
        if proto.ir_version() <= 0 {
            return Err(not_onnx("it has no IR version".into()));
        }
        if graph.node.is_empty() || graph.output.is_empty() {
            return Err(not_onnx("its graph has no nodes or no outputs".into()));
        }
        if let Some(reason) = crate::graph::cycle(graph) {
            return Err(not_onnx(format!("{reason}; an ONNX graph has no cycles")));
        }
        Ok(Self::new(proto))
    }

    /// The file this model was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn graph(&self) -> &GraphProto {
        // `from_bytes` and `GraphBuilder` guarantee a graph; an empty one stands in otherwise.
        static EMPTY: std::sync::OnceLock<GraphProto> = std::sync::OnceLock::new();
        self.proto.graph.as_ref().unwrap_or_else(|| EMPTY.get_or_init(GraphProto::default))
    }

    pub fn graph_mut(&mut self) -> &mut GraphProto {
        self.proto.graph.get_or_insert_with(GraphProto::default)
    }

    /// The model as protobuf bytes with every tensor inline.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// The mapped external-data file `raw` is a slice of, and its offset there: such a
    /// tensor can be handed to ONNX Runtime as a reference to the file, not as bytes.
    pub fn file_backing(&self, raw: &[u8]) -> Option<(&Path, usize)> {
        let start = raw.as_ptr() as usize;
        self.mapped.iter().find_map(|file| {
            let base = file.bytes.as_ptr() as usize;
            let inside = start >= base && start + raw.len() <= base + file.bytes.len();
            inside.then(|| (file.path.as_path(), start - base))
        })
    }

    /// Total bytes of tensor data, the quantity that decides inline vs external storage.
    pub fn tensor_bytes(&self) -> usize {
        let mut total = 0;
        visit_graph_tensors(self.graph(), &mut |t| total += t.raw_data.as_ref().map_or(0, |r| r.len()));
        total
    }

    /// Writes the model to `path` atomically: data goes to temporary files that are renamed
    /// into place only once complete, so an interrupted save leaves the old files intact.
    pub fn save(&self, path: impl AsRef<Path>, external: ExternalData) -> Result<()> {
        let path = path.as_ref();
        let min_bytes = match external {
            ExternalData::Inline => None,
            ExternalData::Auto => (self.tensor_bytes() > INLINE_LIMIT_BYTES).then_some(AUTO_MIN_EXTERNAL_BYTES),
            ExternalData::Always { min_bytes } => Some(min_bytes),
        };
        let write_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| OnnxError::Write { path: p, source }
        };
        let Some(min_bytes) = min_bytes else {
            return write_atomically(path, &self.to_bytes()).map_err(write_err(path));
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| OnnxError::Graph(format!("{} is not a file path", path.display())))?
            .to_string_lossy();
        let data_name = format!("{file_name}.data");
        let data_path = path.with_file_name(&data_name);
        let mut proto = self.proto.clone();
        // Tensors are written one by one as they are taken out, so saving holds no second
        // copy of the weights (the clone shares their bytes with `self`). Each starts aligned,
        // so that a reader can use the mapped bytes in place.
        let mut end = 0usize;
        let mut taken = Vec::new();
        if let Some(graph) = proto.graph.as_mut() {
            visit_graph_tensors_mut(graph, &mut |t| {
                let Some(raw) = t.raw_data.take_if(|r| r.len() >= min_bytes.max(1)) else { return };
                let offset = end.next_multiple_of(alignment(raw.len()));
                point_at(t, &data_name, offset, raw.len());
                end = offset + raw.len();
                taken.push((offset, raw));
            });
        }
        write_atomically_with(&data_path, |file| write_pieces(file, &taken)).map_err(write_err(&data_path))?;
        write_atomically(path, &proto.encode_to_vec()).map_err(write_err(path))
    }
}

/// Bytes a model file takes on disk: the file itself and every distinct external-data file
/// its tensors name (whatever their names: `weights.pb`, `model.onnx_data`, one per tensor).
pub fn bytes_on_disk(path: &Path) -> Result<u64> {
    // Mapped, not read: an inline model may be gigabytes.
    let file = map(path).map_err(|source| OnnxError::Read { path: path.to_path_buf(), source })?;
    let own = file.bytes.len() as u64;
    let model = Model::decode(file.bytes, path)?;
    let mut locations = std::collections::BTreeSet::new();
    visit_graph_tensors(model.graph(), &mut |t| {
        if t.data_location() == DataLocation::External {
            locations.extend(t.external_data.iter().filter(|e| e.key() == "location").map(|e| e.value().to_string()));
        }
    });
    let dir = path.parent().unwrap_or(Path::new("."));
    locations.iter().try_fold(own, |total, location| {
        let file = dir.join(location);
        let len = std::fs::metadata(&file).map_err(|source| OnnxError::Read { path: file, source })?.len();
        Ok(total + len)
    })
}

/// One external-data file shared by several models: each distinct tensor (same name, same
/// bytes) is stored once, however many models use it. Large tensors start on a page boundary
/// so that ONNX Runtime can memory-map them, and the models then share those pages. The
/// tensors' bytes are held, not copied, until [`SharedData::write`] streams them out.
#[derive(Debug)]
pub struct SharedData {
    file_name: String,
    min_bytes: usize,
    /// Each stored tensor at its offset, in file order.
    pieces: Vec<(usize, Bytes)>,
    end: usize,
    /// (name, length, hash of the bytes) → indices in `pieces` of the stored copies.
    stored: HashMap<(String, usize, u64), Vec<usize>>,
}

/// Tensors at least this large are page-aligned in a data file.
const PAGE_ALIGNED_BYTES: usize = 1 << 16;
const PAGE: usize = 4096;
/// Alignment of the other tensors (any element type reads aligned).
const SMALL_ALIGN: usize = 64;

impl SharedData {
    /// A file named `file_name` (beside the models) for tensors of at least `min_bytes`.
    pub fn new(file_name: &str, min_bytes: usize) -> Self {
        Self { file_name: file_name.to_string(), min_bytes, pieces: Vec::new(), end: 0, stored: HashMap::new() }
    }

    /// `model`'s protobuf with its tensors of at least `min_bytes` pointing into this file,
    /// adding those not stored yet.
    pub fn externalize(&mut self, model: &Model) -> ModelProto {
        let mut proto = model.proto.clone();
        if let Some(graph) = proto.graph.as_mut() {
            visit_graph_tensors_mut(graph, &mut |t| self.place(t));
        }
        proto
    }

    fn place(&mut self, t: &mut TensorProto) {
        let Some(raw) = t.raw_data.take_if(|r| r.len() >= self.min_bytes.max(1)) else { return };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&raw[..], &mut hasher);
        let key = (t.name().to_string(), raw.len(), std::hash::Hasher::finish(&hasher));
        let copies = self.stored.entry(key).or_default();
        let offset = match copies.iter().map(|&i| &self.pieces[i]).find(|(_, stored)| stored[..] == raw[..]) {
            Some(&(offset, _)) => offset,
            None => {
                let offset = self.end.next_multiple_of(alignment(raw.len()));
                self.end = offset + raw.len();
                copies.push(self.pieces.len());
                self.pieces.push((offset, raw.clone()));
                offset
            }
        };
        point_at(t, &self.file_name, offset, raw.len());
    }

    /// Distinct tensors stored.
    pub fn tensors(&self) -> usize {
        self.pieces.len()
    }

    /// Bytes the file takes, alignment included.
    pub fn len(&self) -> usize {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Writes the file at `path` (atomically), tensor by tensor.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomically_with(path, |file| write_pieces(file, &self.pieces))
    }
}

/// Writes tensors at their offsets, zeros between them.
fn write_pieces(file: &mut dyn std::io::Write, pieces: &[(usize, Bytes)]) -> std::io::Result<()> {
    let mut at = 0;
    for (offset, raw) in pieces {
        file.write_all(&vec![0; offset - at])?;
        file.write_all(raw)?;
        at = offset + raw.len();
    }
    Ok(())
}

/// Where a tensor of `len` bytes starts in a data file: large ones on a page boundary (ONNX
/// Runtime can then map them), the others aligned for any element type.
fn alignment(len: usize) -> usize {
    if len >= PAGE_ALIGNED_BYTES { PAGE } else { SMALL_ALIGN }
}

/// Points a tensor at `length` bytes at `offset` of the file `location`, dropping any bytes it
/// held.
pub fn point_at(t: &mut TensorProto, location: &str, offset: usize, length: usize) {
    let entry = |key: &str, value: String| StringStringEntryProto { key: Some(key.into()), value: Some(value) };
    t.external_data = vec![
        entry("location", location.to_string()),
        entry("offset", offset.to_string()),
        entry("length", length.to_string()),
    ];
    t.raw_data = None;
    t.set_data_location(DataLocation::External);
}

/// Points every external reference at the bytes of its file, mapped; returns the files.
fn resolve_external(proto: &mut ModelProto, dir: &Path, model_path: &Path) -> Result<Vec<MappedFile>> {
    let mut files: HashMap<String, MappedFile> = HashMap::new();
    let mut failure = None;
    if let Some(graph) = proto.graph.as_mut() {
        visit_graph_tensors_mut(graph, &mut |t| {
            if failure.is_none()
                && t.data_location() == DataLocation::External
                && let Err(reason) = load_external(t, dir, &mut files)
            {
                let tensor = t.name().to_string();
                failure = Some(OnnxError::ExternalData { path: model_path.to_path_buf(), tensor, reason });
            }
        });
    }
    failure.map_or_else(|| Ok(files.into_values().collect()), Err)
}

fn load_external(t: &mut TensorProto, dir: &Path, files: &mut HashMap<String, MappedFile>) -> Result<(), String> {
    let get = |key: &str| t.external_data.iter().find(|e| e.key() == key).map(|e| e.value().to_string());
    let location = get("location").ok_or("no 'location' entry")?;
    if Path::new(&location).is_absolute() || location.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!("location '{location}' must be a relative path inside the model folder"));
    }
    let number = |key: &str| -> Result<Option<u64>, String> {
        get(key).map(|v| v.parse::<u64>().map_err(|_| format!("'{key}' is not a number: {v}"))).transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let file = match files.entry(location.clone()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let path = dir.join(&location);
            e.insert(map(&path).map_err(|err| format!("cannot open {}: {err}", path.display()))?)
        }
    };
    let file_len = file.bytes.len() as u64;
    let length = match number("length")? {
        Some(n) => n,
        None => file_len.checked_sub(offset).ok_or("offset is past the end of the file")?,
    };
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(format!("{location} holds {file_len} bytes, the tensor needs {length} at offset {offset}"));
    }
    // Both lie within the mapped length, so they fit a usize.
    let (start, end) = (offset as usize, (offset + length) as usize);
    t.raw_data = Some(file.bytes.slice(start..end));
    t.external_data.clear();
    t.data_location = None;
    Ok(())
}

/// Maps a file read-only, or returns the process's mapping of it; pages are read from disk as
/// tensors are touched.
fn map(path: &Path) -> std::io::Result<MappedFile> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let canonical = path.canonicalize()?;
    // A file replaced since it was mapped (other length or time) is mapped anew.
    let stamp = (meta.len(), meta.modified().ok());
    let mut mapped = MAPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    mapped.retain(|(_, _, map)| map.strong_count() > 0);
    let known = mapped.iter().find(|(p, s, _)| *p == canonical && *s == stamp).and_then(|(_, _, map)| map.upgrade());
    if let Some(map) = known {
        return Ok(MappedFile { path: canonical, bytes: Bytes::from_owner(SharedMap(map)) });
    }
    // SAFETY: the mapping is read-only. Its bytes change only if another process rewrites the
    // file in place while bitsearch runs: bitsearch never writes a file it reads (an output
    // that would overwrite an input is refused) and replaces files by renaming, which leaves
    // a mapped file's pages as they were.
    #[allow(unsafe_code)]
    let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&file) }?);
    mapped.push((canonical.clone(), stamp, std::sync::Arc::downgrade(&map)));
    Ok(MappedFile { path: canonical, bytes: Bytes::from_owner(SharedMap(map)) })
}

/// Calls `f` on every tensor of the graph: initializers, Constant-like attributes, subgraphs.
fn visit_graph_tensors(graph: &GraphProto, f: &mut dyn FnMut(&TensorProto)) {
    graph.initializer.iter().for_each(&mut *f);
    for node in &graph.node {
        for attr in &node.attribute {
            attr.t.iter().chain(&attr.tensors).for_each(&mut *f);
            for g in attr.g.iter().chain(&attr.graphs) {
                visit_graph_tensors(g, f);
            }
        }
    }
}

fn visit_graph_tensors_mut(graph: &mut GraphProto, f: &mut dyn FnMut(&mut TensorProto)) {
    graph.initializer.iter_mut().for_each(&mut *f);
    for node in &mut graph.node {
        for attr in &mut node.attribute {
            attr.t.iter_mut().chain(attr.tensors.iter_mut()).for_each(&mut *f);
            for g in attr.g.iter_mut().chain(attr.graphs.iter_mut()) {
                visit_graph_tensors_mut(g, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Dim, GraphBuilder};
    use crate::tensor::DataType;

    fn model(w: f32) -> Model {
        let mut b = GraphBuilder::new("m");
        let x = b.input("x", DataType::F32, &[Dim::Fixed(512)]);
        let a = b.initializer("a", ndarray::ArrayD::from_elem(ndarray::IxDyn(&[512]), 1.0));
        let w = b.initializer("w", ndarray::ArrayD::from_elem(ndarray::IxDyn(&[512]), w));
        let y = b.node("add", "Add", &[&x, &a], &[]);
        let z = b.node("mul", "Mul", &[&y, &w], &[]);
        b.output(&z, DataType::F32, &[Dim::Fixed(512)]);
        b.build()
    }

    /// `x → a → b → out`, with `a` also reading `loop_input`.
    fn chain(loop_input: &str) -> Vec<u8> {
        let mut b = GraphBuilder::new("m");
        let x = b.input("x", DataType::F32, &[Dim::Fixed(2)]);
        b.node("a", "Add", &[&x, loop_input], &[]);
        b.node("b", "Relu", &["a"], &[]);
        b.node("c", "Relu", &["b"], &[]);
        b.output("c", DataType::F32, &[Dim::Fixed(2)]);
        b.build().to_bytes()
    }

    #[test]
    fn graphs_with_cycles_are_refused_naming_a_node_on_the_cycle() {
        let label = Path::new("loop.onnx");
        assert!(Model::from_bytes(&chain("x"), label).is_ok());
        let own = Model::from_bytes(&chain("a"), label).unwrap_err().to_string();
        assert!(own.starts_with("loop.onnx: ") && own.contains("node 'a' (Add) reads its own output 'a'"), "{own}");
        // `c` only hangs below the cycle a → b → a; the message names a node on it.
        let longer = Model::from_bytes(&chain("b"), label).unwrap_err().to_string();
        assert!(longer.contains("lies on a cycle") && !longer.contains("'c'"), "{longer}");
    }

    #[test]
    fn shared_data_stores_each_distinct_tensor_once() {
        let mut data = SharedData::new("weights.bin", 256);
        let first = data.externalize(&model(2.0));
        let second = data.externalize(&model(3.0));
        // "a" is the same in both; "w" differs.
        assert_eq!(data.tensors(), 3);
        assert_eq!(data.len(), 3 * 2048);
        let offset = |p: &ModelProto, name: &str| {
            let t = p.graph.as_ref().unwrap().initializer.iter().find(|t| t.name() == name).unwrap();
            t.external_data.iter().find(|e| e.key() == "offset").unwrap().value().to_string()
        };
        assert_eq!(offset(&first, "a"), offset(&second, "a"));
        assert_ne!(offset(&first, "w"), offset(&second, "w"));
        // Read back through a folder, the second model holds its own values.
        let dir = tempfile::tempdir().unwrap();
        data.write(&dir.path().join("weights.bin")).unwrap();
        Model::new(second).save(dir.path().join("m.onnx"), ExternalData::Inline).unwrap();
        let loaded = Model::load(dir.path().join("m.onnx")).unwrap();
        let w = loaded.graph().initializer.iter().find(|t| t.name() == "w").unwrap();
        assert!(crate::tensor_to_f32(w).unwrap().iter().all(|&v| v == 3.0));
    }
}
