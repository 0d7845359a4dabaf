//! A reader for the part of HDF5 that model files use (the Basel Face Model 2017 is an HDF5 file
//! written by statismo): the numeric datasets of a file by path. It follows the format
//! specification's "version 0/1" structures that the HDF5 library writes by default (and h5py
//! with `libver="earliest"`): superblock 0/1, object headers v1 with continuations, old-style
//! groups (symbol-table B-trees, SNOD nodes, local heaps), datatypes of fixed-point and
//! floating-point class, dataspaces v1/v2, and data layout v3 (compact, contiguous, chunked
//! with deflate and shuffle). New-style groups (link messages, fractal heaps) are refused with a
//! message naming them.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
const UNDEFINED: u64 = u64::MAX;
/// The largest dataset read (the BFM 2017's largest is 128 MB as f32).
const MAX_DATASET_BYTES: u64 = 1 << 30;

/// A numeric dataset: its shape (row-major, as HDF5 stores it) and its values as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct Hdf5Error {
    pub file: String,
    pub message: String,
}

struct File<'a> {
    name: &'a str,
    b: &'a [u8],
    offsets: usize,
    lengths: usize,
    base: u64,
}

type Result<T> = std::result::Result<T, Hdf5Error>;

/// A datatype we can convert: (bytes per value, signed integer / unsigned integer / float).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int { size: usize, signed: bool },
    Float { size: usize },
}

#[derive(Default)]
struct Header {
    shape: Option<Vec<usize>>,
    kind: Option<Kind>,
    layout: Option<Layout>,
    filters: Vec<u16>,
    /// Old-style group: (B-tree address, local heap address).
    symbol_table: Option<(u64, u64)>,
    new_style_group: bool,
}

enum Layout {
    Compact(Vec<u8>),
    Contiguous { address: u64, size: u64 },
    Chunked { btree: u64, chunk: Vec<usize> },
}

impl<'a> File<'a> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T> {
        Err(Hdf5Error { file: self.name.to_string(), message: message.into() })
    }

    fn bytes(&self, at: u64, len: usize) -> Result<&'a [u8]> {
        let start = at.checked_add(self.base).and_then(|a| usize::try_from(a).ok());
        match start.and_then(|s| self.b.get(s..s.checked_add(len)?)) {
            Some(s) => Ok(s),
            None => self.fail(format!("{len} bytes at address {at} lie outside the file")),
        }
    }

    fn uint(&self, at: u64, size: usize) -> Result<u64> {
        let b = self.bytes(at, size)?;
        Ok(b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64))
    }

    fn address(&self, at: u64) -> Result<u64> {
        let v = self.uint(at, self.offsets)?;
        Ok(if self.offsets == 8 || v != (1u64 << (8 * self.offsets)) - 1 { v } else { UNDEFINED })
    }

    /// The messages of the object header at `at` (v1), following continuations.
    fn header(&self, at: u64) -> Result<Header> {
        let version = self.uint(at, 1)?;
        if version != 1 {
            return self.fail(format!("object header at {at} is version {version}; only version 1 (the HDF5 library's default) is read"));
        }
        let count = self.uint(at + 2, 2)? as usize;
        let size = self.uint(at + 8, 4)?;
        let mut blocks = vec![(at + 16, size)];
        let mut header = Header::default();
        let mut seen = 0;
        while let Some((start, len)) = blocks.pop() {
            let mut p = start;
            while p + 8 <= start + len && seen < count {
                let (kind, size) = (self.uint(p, 2)?, self.uint(p + 2, 2)?);
                let data = p + 8;
                self.message(&mut header, &mut blocks, kind, data)?;
                p = data + size;
                seen += 1;
            }
            if blocks.len() > 64 {
                return self.fail("too many header continuation blocks");
            }
        }
        Ok(header)
    }

    fn message(&self, h: &mut Header, blocks: &mut Vec<(u64, u64)>, kind: u64, at: u64) -> Result<()> {
        match kind {
            0x0001 => {
                let version = self.uint(at, 1)?;
                let rank = self.uint(at + 1, 1)? as usize;
                let dims_at = match version {
                    1 => at + 8,
                    2 => at + 4,
                    _ => return self.fail(format!("dataspace version {version}")),
                };
                let shape = (0..rank).map(|i| self.uint(dims_at + (i * self.lengths) as u64, self.lengths).map(|d| d as usize)).collect::<Result<_>>()?;
                h.shape = Some(shape);
            }
            0x0003 => {
                let class = self.uint(at, 1)? & 0x0f;
                let bits = self.uint(at + 1, 1)?;
                let size = self.uint(at + 4, 4)? as usize;
                // Bit 0 is the byte order for numbers (other classes use it otherwise).
                if class <= 1 && bits & 1 != 0 {
                    return self.fail("a big-endian number type (not supported)");
                }
                h.kind = match (class, size) {
                    (0, 1 | 2 | 4 | 8) => Some(Kind::Int { size, signed: bits & 0x08 != 0 }),
                    (1, 4 | 8) => Some(Kind::Float { size }),
                    _ => None,
                };
            }
            0x0008 => {
                let version = self.uint(at, 1)?;
                if version != 3 {
                    return self.fail(format!("data layout version {version}; version 3 is read"));
                }
                h.layout = Some(match self.uint(at + 1, 1)? {
                    0 => {
                        let len = self.uint(at + 2, 2)? as usize;
                        Layout::Compact(self.bytes(at + 4, len)?.to_vec())
                    }
                    1 => Layout::Contiguous { address: self.address(at + 2)?, size: self.uint(at + 2 + self.offsets as u64, self.lengths)? },
                    2 => {
                        let rank = self.uint(at + 2, 1)? as usize;
                        let btree = self.address(at + 3)?;
                        let dims_at = at + 3 + self.offsets as u64;
                        let chunk = (0..rank).map(|i| self.uint(dims_at + 4 * i as u64, 4).map(|d| d as usize)).collect::<Result<_>>()?;
                        Layout::Chunked { btree, chunk }
                    }
                    other => return self.fail(format!("data layout class {other}")),
                });
            }
            0x000B => {
                let version = self.uint(at, 1)?;
                let n = self.uint(at + 1, 1)? as usize;
                let mut p = at + if version == 1 { 8 } else { 2 };
                for _ in 0..n {
                    let id = self.uint(p, 2)? as u16;
                    let name_len = if version == 1 || id >= 256 { self.uint(p + 2, 2)? as usize } else { 0 };
                    let fields = if version == 1 || id >= 256 { p + 4 } else { p + 2 };
                    let values = self.uint(fields + 2, 2)? as usize;
                    let mut next = fields + 4;
                    next += if version == 1 { name_len.div_ceil(8) * 8 } else { name_len } as u64;
                    next += 4 * values as u64;
                    if version == 1 && values % 2 == 1 {
                        next += 4;
                    }
                    h.filters.push(id);
                    p = next;
                }
            }
            0x0010 => blocks.push((self.address(at)?, self.uint(at + self.offsets as u64, self.lengths)?)),
            0x0011 => h.symbol_table = Some((self.address(at)?, self.address(at + self.offsets as u64)?)),
            0x0002 | 0x0006 | 0x000A => h.new_style_group = true,
            _ => {}
        }
        Ok(())
    }

    /// The (name, object header address) of every member of an old-style group.
    fn members(&self, btree: u64, heap: u64, depth: usize, seen: &mut HashSet<u64>) -> Result<Vec<(String, u64)>> {
        if depth > 32 {
            return self.fail("group B-tree deeper than 32 levels");
        }
        if !seen.insert(btree) {
            return Ok(Vec::new());
        }
        if self.bytes(btree, 4)? != b"TREE" {
            return self.fail(format!("no group B-tree node at address {btree}"));
        }
        if self.bytes(heap, 4)? != b"HEAP" {
            return self.fail(format!("no local heap at address {heap}"));
        }
        let heap_data = self.address(heap + 8 + 2 * self.lengths as u64)?;
        let level = self.uint(btree + 5, 1)?;
        let used = self.uint(btree + 6, 2)? as usize;
        let key = self.lengths as u64;
        let mut out = Vec::new();
        for i in 0..used {
            let child = self.address(btree + 8 + 2 * self.offsets as u64 + key + i as u64 * (key + self.offsets as u64))?;
            if level > 0 {
                out.extend(self.members(child, heap, depth + 1, seen)?);
                continue;
            }
            if self.bytes(child, 4)? != b"SNOD" {
                return self.fail(format!("no symbol table node at address {child}"));
            }
            let symbols = self.uint(child + 6, 2)? as usize;
            let entry = 2 * self.offsets as u64 + 24;
            for s in 0..symbols as u64 {
                let e = child + 8 + s * entry;
                let name_at = self.uint(e, self.offsets)?;
                let object = self.address(e + self.offsets as u64)?;
                // The name: a NUL-terminated string in the heap's data (bounds checked first).
                self.bytes(heap_data + name_at, 1)?;
                let start = (heap_data + name_at + self.base) as usize;
                let end = self.b[start..].iter().position(|&c| c == 0).map_or(self.b.len(), |n| start + n);
                out.push((String::from_utf8_lossy(&self.b[start..end]).into_owned(), object));
            }
        }
        Ok(out)
    }

    fn values(&self, raw: &[u8], kind: Kind) -> Vec<f32> {
        match kind {
            Kind::Float { size: 4 } => raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4"))).collect(),
            Kind::Float { .. } => raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8")) as f32).collect(),
            Kind::Int { size, signed } => raw
                .chunks_exact(size)
                .map(|b| {
                    let u = b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64);
                    if signed {
                        let shift = 64 - 8 * size as u32;
                        (((u << shift) as i64) >> shift) as f32
                    } else {
                        u as f32
                    }
                })
                .collect(),
        }
    }

    /// The raw bytes of a chunked dataset, reassembled row-major.
    fn chunked(&self, path: &str, btree: u64, chunk: &[usize], shape: &[usize], element: usize, filters: &[u16]) -> Result<Vec<u8>> {
        // Deflate shrinks at most about 1032:1, so a dataset cannot hold more than that times the
        // file: a damaged header must not make us allocate what no file could fill.
        let limit = (self.b.len() as u64).saturating_mul(1032).min(MAX_DATASET_BYTES);
        let total = shape.iter().try_fold(element, |a, &d| a.checked_mul(d)).filter(|&t| t as u64 <= limit);
        let Some(total) = total else { return self.fail(format!("`{path}` declares more data than the file could hold")) };
        let mut out = vec![0u8; total];
        let rank = shape.len();
        let mut stack = vec![(btree, 0usize)];
        let mut seen = HashSet::new();
        while let Some((node, depth)) = stack.pop() {
            if !seen.insert(node) {
                continue;
            }
            if depth > 32 || self.bytes(node, 4)? != b"TREE" {
                return self.fail(format!("`{path}`: no chunk B-tree node at address {node}"));
            }
            let level = self.uint(node + 5, 1)?;
            let used = self.uint(node + 6, 2)? as usize;
            let key = 8 + 8 * (rank as u64 + 1);
            for i in 0..used as u64 {
                let k = node + 8 + 2 * self.offsets as u64 + i * (key + self.offsets as u64);
                let child = self.address(k + key)?;
                if level > 0 {
                    stack.push((child, depth + 1));
                    continue;
                }
                let size = self.uint(k, 4)? as usize;
                let mask = self.uint(k + 4, 4)?;
                let origin: Vec<usize> = (0..rank).map(|d| self.uint(k + 8 + 8 * d as u64, 8).map(|v| v as usize)).collect::<Result<_>>()?;
                let mut data = self.bytes(child, size)?.to_vec();
                for (f, id) in filters.iter().enumerate().rev() {
                    if mask & (1 << f) != 0 {
                        continue;
                    }
                    data = match id {
                        1 => {
                            let mut inflated = Vec::new();
                            let limit = chunk.iter().product::<usize>().saturating_mul(element) as u64;
                            flate2::read::ZlibDecoder::new(&data[..]).take(limit + 1).read_to_end(&mut inflated).map_err(|e| Hdf5Error { file: self.name.into(), message: format!("`{path}`: a chunk does not inflate: {e}") })?;
                            inflated
                        }
                        2 => {
                            let n = data.len() / element;
                            let mut plain = vec![0u8; data.len()];
                            for (i, b) in data.iter().enumerate().take(n * element) {
                                plain[(i % n) * element + i / n] = *b;
                            }
                            plain
                        }
                        other => return self.fail(format!("`{path}` uses filter {other} (deflate and shuffle are read)")),
                    };
                }
                // Copy the chunk's rows into place (chunks at the edges are padded).
                let chunk_elements: usize = chunk[..rank].iter().product();
                if data.len() < chunk_elements * element {
                    return self.fail(format!("`{path}`: a chunk holds {} bytes, not {}", data.len(), chunk_elements * element));
                }
                for c in 0..chunk_elements {
                    let mut rest = c;
                    let mut index = 0usize;
                    let mut inside = true;
                    for d in (0..rank).rev() {
                        let at = origin[d] + rest % chunk[d];
                        rest /= chunk[d];
                        inside &= at < shape[d];
                        index += at * shape[d + 1..].iter().product::<usize>();
                    }
                    if inside {
                        out[index * element..(index + 1) * element].copy_from_slice(&data[c * element..(c + 1) * element]);
                    }
                }
            }
        }
        Ok(out)
    }

    fn walk(&self, at: u64, path: &str, out: &mut BTreeMap<String, Dataset>, depth: usize, visited: &mut HashSet<u64>) -> Result<()> {
        if depth > 32 {
            return self.fail("groups nested deeper than 32");
        }
        // A group linked twice (hard links, or a damaged file's cycles) is read once.
        if !visited.insert(at) {
            return Ok(());
        }
        let h = self.header(at)?;
        if let Some((btree, heap)) = h.symbol_table {
            for (name, object) in self.members(btree, heap, 0, &mut HashSet::new())? {
                self.walk(object, &format!("{path}/{name}"), out, depth + 1, visited)?;
            }
            return Ok(());
        }
        if h.new_style_group && h.layout.is_none() {
            return self.fail(format!("`{path}` is a new-style group (link messages); save with the earliest file format"));
        }
        let (Some(shape), Some(kind), Some(layout)) = (h.shape, h.kind, h.layout) else { return Ok(()) };
        let element = match kind {
            Kind::Int { size, .. } | Kind::Float { size } => size,
        };
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&c| (c as u64).saturating_mul(element as u64) <= MAX_DATASET_BYTES);
        let Some(count) = count else { return self.fail(format!("`{path}` declares more than {} GiB", MAX_DATASET_BYTES >> 30)) };
        let raw = match layout {
            Layout::Compact(bytes) => bytes,
            Layout::Contiguous { address, .. } if address == UNDEFINED => return self.fail(format!("`{path}` was never written (no data address)")),
            Layout::Contiguous { address, size } => {
                if size < (count * element) as u64 {
                    return self.fail(format!("`{path}`: {size} bytes stored for {count} values of {element} bytes"));
                }
                self.bytes(address, count * element)?.to_vec()
            }
            Layout::Chunked { btree, chunk } => {
                if chunk.len() != shape.len() + 1 {
                    return self.fail(format!("`{path}`: chunk of rank {} for data of rank {}", chunk.len() - 1, shape.len()));
                }
                if chunk.contains(&0) {
                    return self.fail(format!("`{path}`: a chunk dimension is 0"));
                }
                self.chunked(path, btree, &chunk, &shape, element, &h.filters)?
            }
        };
        if raw.len() < count * element {
            return self.fail(format!("`{path}`: {} bytes for {count} values", raw.len()));
        }
        out.insert(path.to_string(), Dataset { shape, data: self.values(&raw[..count * element], kind) });
        Ok(())
    }
}

/// Every numeric dataset of an HDF5 file image, by path (`/shape/model/mean`).
pub fn parse(name: &str, b: &[u8]) -> Result<BTreeMap<String, Dataset>> {
    let fail = |message: String| Err(Hdf5Error { file: name.to_string(), message });
    let Some(start) = [0usize, 512, 1024, 2048].into_iter().find(|&s| b.get(s..s + 8) == Some(SIGNATURE)) else {
        return fail("not an HDF5 file (no signature)".into());
    };
    let version = b.get(start + 8).copied().unwrap_or(0xff);
    if version > 1 {
        return fail(format!("superblock version {version}; versions 0 and 1 (the HDF5 library's default) are read"));
    }
    let (offsets, lengths) = (b.get(start + 13).copied().unwrap_or(0) as usize, b.get(start + 14).copied().unwrap_or(0) as usize);
    if !matches!(offsets, 4 | 8) || !matches!(lengths, 4 | 8) {
        return fail(format!("sizes of offsets {offsets} and lengths {lengths}"));
    }
    let file = File { name, b, offsets, lengths, base: 0 };
    let addresses = start as u64 + if version == 0 { 24 } else { 28 };
    let base = file.uint(addresses, offsets)?;
    let file = File { base, ..file };
    // The root group's symbol table entry follows the four superblock addresses.
    let root_entry = addresses + 4 * offsets as u64 - base;
    let root = file.address(root_entry + offsets as u64)?;
    let mut out = BTreeMap::new();
    file.walk(root, "", &mut out, 0, &mut HashSet::new())?;
    Ok(out)
}
