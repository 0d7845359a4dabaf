//! `MorphableModel`: a checked view over the bytes of a native model file, generated in memory
//! or memory-mapped from disk. Accessors hand out the arrays in place, without copying.

use crate::face;
use crate::file::{self, Array, Dims, Header, ModelError, ModelErrorKind};
use crate::generate::{self, ModelSpec};
use std::path::Path;

enum Storage {
    /// A generated model: the file image in u64 words so the f32 arrays are aligned.
    Owned { words: Vec<u64>, len: usize },
    Mapped(memmap2::Mmap),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
            Storage::Mapped(map) => map,
        }
    }
}

pub struct MorphableModel {
    storage: Storage,
    header: Header,
    origin: String,
}

impl std::fmt::Debug for MorphableModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MorphableModel").field("origin", &self.origin).field("header", &self.header).finish()
    }
}

impl MorphableModel {
    /// Generates the procedural model a spec describes.
    pub fn generate(spec: &ModelSpec) -> Self {
        let bytes = file::encode(&generate::generate(spec));
        Self::from_bytes(&bytes, "<generated>").expect("a freshly encoded model parses")
    }

    /// Parses (and fully checks) a file image held in memory.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, ModelError> {
        let header = file::parse(bytes, origin)?;
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Ok(Self { storage: Storage::Owned { words, len: bytes.len() }, header, origin: origin.to_string() })
    }

    /// Memory-maps a model file and checks it.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let origin = path.display().to_string();
        let io = |e| ModelError { origin: origin.clone(), kind: ModelErrorKind::Io(e) };
        let f = std::fs::File::open(path).map_err(io)?;
        let map = map_file(&f).map_err(io)?;
        let header = file::parse(&map, &origin)?;
        Ok(Self { storage: Storage::Mapped(map), header, origin })
    }

    /// Writes the model's file image atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        file::atomic_write(path, self.bytes())
            .map_err(|e| ModelError { origin: path.display().to_string(), kind: ModelErrorKind::Io(e) })
    }

    /// The file image.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn dims(&self) -> Dims {
        self.header.dims
    }

    pub fn n_vertices(&self) -> usize {
        self.header.dims.vertices
    }

    pub fn n_triangles(&self) -> usize {
        self.header.dims.triangles
    }

    pub fn n_id(&self) -> usize {
        self.header.dims.id
    }

    pub fn n_exp(&self) -> usize {
        self.header.dims.exp
    }

    pub fn n_albedo(&self) -> usize {
        self.header.dims.albedo
    }

    fn f32s(&self, a: Array) -> &[f32] {
        bytemuck::cast_slice(&self.bytes()[self.header.ranges[a as usize].clone()])
    }

    fn u32s(&self, a: Array) -> &[u32] {
        bytemuck::cast_slice(&self.bytes()[self.header.ranges[a as usize].clone()])
    }

    /// xyz per vertex (mm).
    pub fn mean_shape(&self) -> &[f32] {
        self.f32s(Array::MeanShape)
    }

    /// n_id × 3N, component-major, orthonormal columns.
    pub fn id_basis(&self) -> &[f32] {
        self.f32s(Array::IdBasis)
    }

    pub fn id_sigma(&self) -> &[f32] {
        self.f32s(Array::IdSigma)
    }

    /// n_exp × 3N, component-major, orthonormal columns.
    pub fn exp_basis(&self) -> &[f32] {
        self.f32s(Array::ExpBasis)
    }

    pub fn exp_sigma(&self) -> &[f32] {
        self.f32s(Array::ExpSigma)
    }

    /// rgb per vertex, linear, in [0, 1].
    pub fn mean_albedo(&self) -> &[f32] {
        self.f32s(Array::MeanAlbedo)
    }

    /// n_albedo × 3N, component-major, orthonormal columns.
    pub fn albedo_basis(&self) -> &[f32] {
        self.f32s(Array::AlbedoBasis)
    }

    pub fn albedo_sigma(&self) -> &[f32] {
        self.f32s(Array::AlbedoSigma)
    }

    /// Three vertex indices per triangle, counter-clockwise seen from the camera (+z).
    pub fn triangles(&self) -> &[u32] {
        self.u32s(Array::Triangles)
    }

    /// uv per vertex in [0, 1]², v up.
    pub fn uv(&self) -> &[f32] {
        self.f32s(Array::Uv)
    }

    /// The 68 iBUG landmark vertices.
    pub fn landmarks(&self) -> &[u32] {
        self.u32s(Array::Landmarks)
    }

    /// The vertices of FaceMesh's 468 points in FaceMesh's order (0..468 for generated models:
    /// the canonical mesh's vertices keep their indices); empty for a model without them.
    pub fn dense_landmarks(&self) -> &[u32] {
        self.u32s(Array::DenseLandmarks)
    }

    /// Each vertex's mirror image across x = 0.
    pub fn mirror(&self) -> &[u32] {
        self.u32s(Array::Mirror)
    }

    /// `face::REGION_*` per vertex.
    pub fn regions(&self) -> &[u32] {
        self.u32s(Array::Regions)
    }

    /// PGN's weight mask W per vertex: 5 on eyes, nose and mouth, 1 elsewhere.
    pub fn region_weights(&self) -> Vec<f32> {
        self.regions().iter().map(|&r| if r == face::REGION_SKIN { 1.0 } else { 5.0 }).collect()
    }
}

/// The one place faceforge needs `unsafe`: memmap2 cannot promise that no other process
/// truncates the file while it is mapped. faceforge only reads what it maps (model files, a
/// training's frame cache), and checks the whole image right after mapping (`parse`, the cache's
/// checksum).
#[allow(unsafe_code)]
pub fn map_file(f: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: read-only map of a file faceforge does not write while it is open; see above.
    unsafe { memmap2::Mmap::map(f) }
}
