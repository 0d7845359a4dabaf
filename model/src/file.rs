//! The native model file (`.ffm`): a versioned little-endian header, a table of arrays each with
//! its CRC-32, and the arrays themselves at 64-byte aligned offsets so that a memory map can be
//! read in place. Reading checks everything and names the file and the fault; it never panics.
//!
//! ```text
//! 0   magic "FFMODEL\0"            8   version u32          12  header length u32
//! 16  vertices, triangles, id, exp, albedo components, landmarks: 6 × u32
//! 40  seed u64                      48  preset name, 16 bytes, zero-padded
//! 64  array count u32, dense landmarks u32 (FaceMesh's 468 points, or 0)
//! 72  array table: per array 48 bytes: name [16], dtype u32 (1 = f32, 2 = u32), reserved u32,
//!     offset u64, element count u64, crc32 u32, reserved u32
//! …   header crc32 u32 (over every header byte before it)
//! ```

use crate::generate::ModelArrays;
use std::fmt;
use std::ops::Range;
use std::path::Path;

pub const MAGIC: [u8; 8] = *b"FFMODEL\0";
/// Version 2 added `dense_landmarks` (the model's vertices of FaceMesh's 468 points).
pub const VERSION: u32 = 2;
const FIXED_HEADER: usize = 72;
const ENTRY: usize = 48;
const ALIGN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32 = 1,
    U32 = 2,
}

/// The arrays of a model file, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Array {
    MeanShape,
    IdBasis,
    IdSigma,
    ExpBasis,
    ExpSigma,
    MeanAlbedo,
    AlbedoBasis,
    AlbedoSigma,
    Triangles,
    Uv,
    Landmarks,
    Mirror,
    Regions,
    DenseLandmarks,
}

pub const ARRAYS: [Array; 14] = [
    Array::MeanShape,
    Array::IdBasis,
    Array::IdSigma,
    Array::ExpBasis,
    Array::ExpSigma,
    Array::MeanAlbedo,
    Array::AlbedoBasis,
    Array::AlbedoSigma,
    Array::Triangles,
    Array::Uv,
    Array::Landmarks,
    Array::Mirror,
    Array::Regions,
    Array::DenseLandmarks,
];

impl Array {
    pub fn name(self) -> &'static str {
        match self {
            Array::MeanShape => "mean_shape",
            Array::IdBasis => "id_basis",
            Array::IdSigma => "id_sigma",
            Array::ExpBasis => "exp_basis",
            Array::ExpSigma => "exp_sigma",
            Array::MeanAlbedo => "mean_albedo",
            Array::AlbedoBasis => "albedo_basis",
            Array::AlbedoSigma => "albedo_sigma",
            Array::Triangles => "triangles",
            Array::Uv => "uv",
            Array::Landmarks => "landmarks",
            Array::Mirror => "mirror",
            Array::Regions => "regions",
            Array::DenseLandmarks => "dense_landmarks",
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Array::Triangles | Array::Landmarks | Array::Mirror | Array::Regions | Array::DenseLandmarks => DType::U32,
            _ => DType::F32,
        }
    }

    /// How many elements the array holds for the given sizes.
    /// Saturating, so a crafted header cannot overflow it (it then matches no real count).
    fn expected_len(self, d: &Dims) -> usize {
        let v3 = 3usize.saturating_mul(d.vertices);
        match self {
            Array::MeanShape | Array::MeanAlbedo => v3,
            Array::IdBasis => d.id.saturating_mul(v3),
            Array::IdSigma => d.id,
            Array::ExpBasis => d.exp.saturating_mul(v3),
            Array::ExpSigma => d.exp,
            Array::AlbedoBasis => d.albedo.saturating_mul(v3),
            Array::AlbedoSigma => d.albedo,
            Array::Triangles => 3usize.saturating_mul(d.triangles),
            Array::Uv => 2usize.saturating_mul(d.vertices),
            Array::Landmarks => d.landmarks,
            Array::DenseLandmarks => d.dense_landmarks,
            Array::Mirror | Array::Regions => d.vertices,
        }
    }
}

/// The sizes a model file declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub vertices: usize,
    pub triangles: usize,
    pub id: usize,
    pub exp: usize,
    pub albedo: usize,
    pub landmarks: usize,
    /// FaceMesh's 468, or 0 for a model without dense correspondence.
    pub dense_landmarks: usize,
}

/// What a parsed header says: sizes, provenance and where each array lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub dims: Dims,
    pub seed: u64,
    pub preset: String,
    /// Byte range of each array, in `ARRAYS` order.
    pub ranges: Vec<Range<usize>>,
}

/// A model file that cannot be used, and why.
#[derive(Debug)]
pub struct ModelError {
    /// The file (or `<generated>` / `<memory>`).
    pub origin: String,
    pub kind: ModelErrorKind,
}

#[derive(Debug)]
pub enum ModelErrorKind {
    Io(std::io::Error),
    Truncated { what: String, needed: usize, len: usize },
    NotAModel,
    WrongVersion { found: u32 },
    HeaderChecksum,
    ArrayChecksum { array: &'static str },
    Invalid(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model file {}: ", self.origin)?;
        match &self.kind {
            ModelErrorKind::Io(e) => write!(f, "{e}"),
            ModelErrorKind::Truncated { what, needed, len } => write!(
                f,
                "truncated: {what} needs {needed} bytes but the file has {len}; it was cut short while being written or copied, export it again"
            ),
            ModelErrorKind::NotAModel => write!(f, "not a faceforge model (no FFMODEL magic); convert other formats with `faceforge model import`"),
            ModelErrorKind::WrongVersion { found } => write!(
                f,
                "format version {found}, but this faceforge reads version {VERSION}; re-export it with this faceforge"
            ),
            ModelErrorKind::HeaderChecksum => write!(f, "header checksum mismatch: the file is corrupted"),
            ModelErrorKind::ArrayChecksum { array } => write!(f, "checksum mismatch in array `{array}`: the file is corrupted"),
            ModelErrorKind::Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ModelErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A name in a 16-byte field, cut to fit.
fn name_field(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(16);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

fn read_name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Serialises generated arrays into the native format.
pub fn encode(a: &ModelArrays) -> Vec<u8> {
    let dims = Dims {
        vertices: a.mean_shape.len() / 3,
        triangles: a.triangles.len() / 3,
        id: a.id_sigma.len(),
        exp: a.exp_sigma.len(),
        albedo: a.albedo_sigma.len(),
        landmarks: a.landmarks.len(),
        dense_landmarks: a.dense_landmarks.len(),
    };
    let payloads: [&[u8]; 14] = [
        bytemuck::cast_slice(&a.mean_shape),
        bytemuck::cast_slice(&a.id_basis),
        bytemuck::cast_slice(&a.id_sigma),
        bytemuck::cast_slice(&a.exp_basis),
        bytemuck::cast_slice(&a.exp_sigma),
        bytemuck::cast_slice(&a.mean_albedo),
        bytemuck::cast_slice(&a.albedo_basis),
        bytemuck::cast_slice(&a.albedo_sigma),
        bytemuck::cast_slice(&a.triangles),
        bytemuck::cast_slice(&a.uv),
        bytemuck::cast_slice(&a.landmarks),
        bytemuck::cast_slice(&a.mirror),
        bytemuck::cast_slice(&a.regions),
        bytemuck::cast_slice(&a.dense_landmarks),
    ];
    let header_len = FIXED_HEADER + ENTRY * ARRAYS.len() + 4;
    let align = |x: usize| x.div_ceil(ALIGN) * ALIGN;
    let mut offsets = Vec::with_capacity(ARRAYS.len());
    let mut at = align(header_len);
    for p in &payloads {
        offsets.push(at);
        at = align(at + p.len());
    }
    let mut out = vec![0u8; at];

    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(header_len as u32).to_le_bytes());
    let counts = [dims.vertices, dims.triangles, dims.id, dims.exp, dims.albedo, dims.landmarks];
    for (i, c) in counts.iter().enumerate() {
        out[16 + 4 * i..20 + 4 * i].copy_from_slice(&(*c as u32).to_le_bytes());
    }
    out[40..48].copy_from_slice(&a.seed.to_le_bytes());
    out[48..64].copy_from_slice(&name_field(&a.preset));
    out[64..68].copy_from_slice(&(ARRAYS.len() as u32).to_le_bytes());
    out[68..72].copy_from_slice(&(dims.dense_landmarks as u32).to_le_bytes());
    for (i, (array, p)) in ARRAYS.iter().zip(&payloads).enumerate() {
        let e = FIXED_HEADER + ENTRY * i;
        out[e..e + 16].copy_from_slice(&name_field(array.name()));
        out[e + 16..e + 20].copy_from_slice(&(array.dtype() as u32).to_le_bytes());
        out[e + 24..e + 32].copy_from_slice(&(offsets[i] as u64).to_le_bytes());
        out[e + 32..e + 40].copy_from_slice(&((p.len() / 4) as u64).to_le_bytes());
        out[e + 40..e + 44].copy_from_slice(&crc32fast::hash(p).to_le_bytes());
        out[offsets[i]..offsets[i] + p.len()].copy_from_slice(p);
    }
    let crc = crc32fast::hash(&out[..header_len - 4]);
    out[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Recomputes the header's and every in-bounds array's checksum in place: lets a fuzzer's (or a
/// repair tool's) changes reach the checks that stand behind the checksums.
pub fn fix_checksums(b: &mut [u8]) {
    let header_len = FIXED_HEADER + ENTRY * ARRAYS.len() + 4;
    if b.len() < header_len {
        return;
    }
    for i in 0..ARRAYS.len() {
        let e = FIXED_HEADER + ENTRY * i;
        let (offset, count) = (u64_at(b, e + 24) as usize, u64_at(b, e + 32) as usize);
        let end = offset.saturating_add(count.saturating_mul(4));
        if end <= b.len() {
            let crc = crc32fast::hash(&b[offset..end]);
            b[e + 40..e + 44].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&b[..header_len - 4]);
    b[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a whole file image and returns its header. Every array's checksum is verified, and
/// every index (triangles, landmarks, mirror) is checked against the vertex count.
pub fn parse(b: &[u8], origin: &str) -> Result<Header, ModelError> {
    let err = |kind| ModelError { origin: origin.to_string(), kind };
    let truncated = |what: &str, needed: usize| err(ModelErrorKind::Truncated { what: what.to_string(), needed, len: b.len() });
    if b.len() < 8 || b[0..8] != MAGIC {
        return Err(if b.len() < 8 && MAGIC.starts_with(b) { truncated("the magic number", 8) } else { err(ModelErrorKind::NotAModel) });
    }
    if b.len() < FIXED_HEADER {
        return Err(truncated("the fixed header", FIXED_HEADER));
    }
    let version = u32_at(b, 8);
    if version != VERSION {
        return Err(err(ModelErrorKind::WrongVersion { found: version }));
    }
    let header_len = u32_at(b, 12) as usize;
    let n_arrays = u32_at(b, 64) as usize;
    if n_arrays != ARRAYS.len() || header_len != FIXED_HEADER + ENTRY * n_arrays + 4 {
        return Err(err(ModelErrorKind::Invalid(format!(
            "header declares {n_arrays} arrays and {header_len} header bytes; version {VERSION} has {} arrays",
            ARRAYS.len()
        ))));
    }
    if b.len() < header_len {
        return Err(truncated("the array table", header_len));
    }
    if crc32fast::hash(&b[..header_len - 4]) != u32_at(b, header_len - 4) {
        return Err(err(ModelErrorKind::HeaderChecksum));
    }
    let c = |i: usize| u32_at(b, 16 + 4 * i) as usize;
    let dims = Dims { vertices: c(0), triangles: c(1), id: c(2), exp: c(3), albedo: c(4), landmarks: c(5), dense_landmarks: u32_at(b, 68) as usize };

    let mut ranges = Vec::with_capacity(n_arrays);
    for (i, array) in ARRAYS.iter().enumerate() {
        let e = FIXED_HEADER + ENTRY * i;
        let name = read_name(&b[e..e + 16]);
        if name != array.name() || u32_at(b, e + 16) != array.dtype() as u32 {
            return Err(err(ModelErrorKind::Invalid(format!(
                "array {i} is `{name}` of dtype {}, expected `{}`",
                u32_at(b, e + 16),
                array.name()
            ))));
        }
        let (offset, count) = (u64_at(b, e + 24) as usize, u64_at(b, e + 32) as usize);
        let expected = array.expected_len(&dims);
        if count != expected {
            return Err(err(ModelErrorKind::Invalid(format!(
                "array `{name}` has {count} elements but the header's sizes need {expected}"
            ))));
        }
        if offset % ALIGN != 0 {
            return Err(err(ModelErrorKind::Invalid(format!("array `{name}` starts at {offset}, not {ALIGN}-byte aligned"))));
        }
        let end = offset.saturating_add(count.saturating_mul(4));
        if end > b.len() {
            return Err(truncated(&format!("array `{name}`"), end));
        }
        if crc32fast::hash(&b[offset..end]) != u32_at(b, e + 40) {
            return Err(err(ModelErrorKind::ArrayChecksum { array: array.name() }));
        }
        ranges.push(offset..end);
    }

    let header = Header { version, dims, seed: u64_at(b, 40), preset: read_name(&b[48..64]), ranges };
    for array in [Array::Triangles, Array::Landmarks, Array::Mirror, Array::DenseLandmarks] {
        let r = &header.ranges[array as usize];
        let values: &[u32] = bytemuck::cast_slice(&b[r.clone()]);
        if let Some(bad) = values.iter().position(|&v| v as usize >= dims.vertices) {
            return Err(err(ModelErrorKind::Invalid(format!(
                "array `{}` element {bad} is vertex {}, but the model has {} vertices",
                array.name(),
                values[bad],
                dims.vertices
            ))));
        }
    }
    Ok(header)
}

/// Writes bytes to `path` through a temporary file in the same folder and a rename, so a killed
/// process never leaves half a file under the final name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
