//! MATLAB level-5 MAT files (what `save` writes up to `-v7`, and scipy's `savemat`): the numeric
//! arrays of a file by name, for importing the Basel Face Model and its derivatives. Reads
//! little-endian files, plain or zlib-compressed (`miCOMPRESSED`) elements, real numeric arrays
//! of any class; skips structs, cells, strings and sparse arrays. Also writes such files, so the
//! tests can build fakes of the real (unshippable) layouts.
//!
//! Layout: a 128-byte header (text, subsystem offset, version 0x0100, "IM"), then data elements,
//! each an 8-byte tag (type, byte count; or a 4-byte "small" tag with the data inline) and its
//! data padded to 8 bytes. A matrix (`miMATRIX`) holds array flags (class), dimensions, a name
//! and the real part, column-major.

use std::collections::BTreeMap;
use std::io::Read;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
/// mxDOUBLE_CLASS … mxUINT64_CLASS: the numeric classes.
const NUMERIC_CLASSES: std::ops::RangeInclusive<u32> = 6..=15;
const MX_DOUBLE_CLASS: u32 = 6;
const MX_SINGLE_CLASS: u32 = 7;
const MX_INT32_CLASS: u32 = 12;
/// The most one compressed element may inflate to (the BFM's largest array, as doubles, is
/// 255 MB); more is a damaged file or a zip bomb.
const MAX_INFLATED: u64 = 1 << 30;
/// Array flag: complex values (not used by any model file; refused).
const FLAG_COMPLEX: u32 = 0x0800;

/// A numeric array: its dimensions and its values, column-major, as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct MatArray {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

impl MatArray {
    pub fn rows(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }

    pub fn cols(&self) -> usize {
        self.dims.iter().skip(1).product()
    }
}

/// A MAT file that cannot be read: where (byte offset) and what.
#[derive(Debug, thiserror::Error)]
#[error("{file}: byte {offset}: {message}")]
pub struct MatError {
    pub file: String,
    pub offset: usize,
    pub message: String,
}

struct Reader<'a> {
    file: &'a str,
    bytes: &'a [u8],
    /// Where `bytes` starts in the file (for messages; compressed elements restart at 0).
    base: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, at: usize, message: impl Into<String>) -> Result<T, MatError> {
        Err(MatError { file: self.file.to_string(), offset: self.base + at, message: message.into() })
    }

    fn u32_at(&self, at: usize) -> Result<u32, MatError> {
        match self.bytes.get(at..at + 4) {
            Some(b) => Ok(u32::from_le_bytes(b.try_into().expect("4 bytes"))),
            None => self.fail(at, "the file ends inside a tag"),
        }
    }

    /// The element at `at`: (type, data range, where the next element starts).
    fn element(&self, at: usize) -> Result<(u32, std::ops::Range<usize>, usize), MatError> {
        let first = self.u32_at(at)?;
        if first >> 16 != 0 {
            // Small element: type and count in 4 bytes, up to 4 data bytes after them.
            let (kind, count) = (first & 0xffff, (first >> 16) as usize);
            if count > 4 {
                return self.fail(at, format!("a small element says it holds {count} bytes (at most 4)"));
            }
            if at + 8 > self.bytes.len() {
                return self.fail(at, "the file ends inside a small element");
            }
            return Ok((kind, at + 4..at + 4 + count, at + 8));
        }
        let count = self.u32_at(at + 4)? as usize;
        let start = at + 8;
        let end = start.checked_add(count).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else { return self.fail(at, format!("an element of {count} bytes runs past the end of the file")) };
        // Compressed elements are not padded; the others are to 8 bytes.
        let next = if first == MI_COMPRESSED { end } else { start + count.div_ceil(8) * 8 };
        Ok((first, start..end, next))
    }

    /// The numbers of a numeric element, as f32.
    fn numbers(&self, kind: u32, range: std::ops::Range<usize>) -> Result<Vec<f32>, MatError> {
        let b = &self.bytes[range.clone()];
        let (size, convert): (usize, fn(&[u8]) -> f32) = match kind {
            MI_INT8 => (1, |b| b[0] as i8 as f32),
            MI_UINT8 => (1, |b| b[0] as f32),
            MI_INT16 => (2, |b| i16::from_le_bytes([b[0], b[1]]) as f32),
            MI_UINT16 => (2, |b| u16::from_le_bytes([b[0], b[1]]) as f32),
            MI_INT32 => (4, |b| i32::from_le_bytes(b[..4].try_into().expect("4")) as f32),
            MI_UINT32 => (4, |b| u32::from_le_bytes(b[..4].try_into().expect("4")) as f32),
            MI_SINGLE => (4, |b| f32::from_le_bytes(b[..4].try_into().expect("4"))),
            MI_DOUBLE => (8, |b| f64::from_le_bytes(b[..8].try_into().expect("8")) as f32),
            MI_INT64 => (8, |b| i64::from_le_bytes(b[..8].try_into().expect("8")) as f32),
            MI_UINT64 => (8, |b| u64::from_le_bytes(b[..8].try_into().expect("8")) as f32),
            other => return self.fail(range.start, format!("data of type {other} is not numeric")),
        };
        if !b.len().is_multiple_of(size) {
            return self.fail(range.start, format!("{} bytes is not a whole number of {size}-byte values", b.len()));
        }
        Ok(b.chunks_exact(size).map(convert).collect())
    }

    /// A matrix element's name and array, or None for what is not a real numeric array.
    fn matrix(&self, range: std::ops::Range<usize>) -> Result<Option<(String, MatArray)>, MatError> {
        let (kind, flags, at) = self.element(range.start)?;
        if kind != MI_UINT32 || flags.len() < 8 {
            return self.fail(range.start, "a matrix does not start with its array flags");
        }
        let flags_word = self.u32_at(flags.start)?;
        let class = flags_word & 0xff;
        let (kind, dims_range, at) = self.element(at)?;
        if kind != MI_INT32 {
            return self.fail(dims_range.start, "a matrix's dimensions are not int32");
        }
        let dims: Vec<usize> = self.numbers(kind, dims_range.clone())?.iter().map(|&d| d as usize).collect();
        let (_, name_range, at) = self.element(at)?;
        let name = String::from_utf8_lossy(&self.bytes[name_range]).into_owned();
        if !NUMERIC_CLASSES.contains(&class) {
            return Ok(None);
        }
        if flags_word & FLAG_COMPLEX != 0 {
            return self.fail(range.start, format!("`{name}` is complex"));
        }
        let (kind, real, _) = self.element(at)?;
        let data = self.numbers(kind, real.clone())?;
        let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if expected != Some(data.len()) {
            return self.fail(real.start, format!("`{name}` has {} values for dimensions {dims:?}", data.len()));
        }
        Ok(Some((name, MatArray { dims, data })))
    }

    fn read_all(&self, from: usize, out: &mut BTreeMap<String, MatArray>) -> Result<(), MatError> {
        let mut at = from;
        while at + 8 <= self.bytes.len() {
            let (kind, range, next) = self.element(at)?;
            match kind {
                MI_MATRIX => {
                    if let Some((name, array)) = self.matrix(range)? {
                        out.insert(name, array);
                    }
                }
                MI_COMPRESSED => {
                    let mut inflated = Vec::new();
                    let mut decoder = flate2::read::ZlibDecoder::new(&self.bytes[range.clone()]).take(MAX_INFLATED + 1);
                    if let Err(e) = decoder.read_to_end(&mut inflated) {
                        return self.fail(range.start, format!("a compressed element does not inflate: {e}"));
                    }
                    if inflated.len() as u64 > MAX_INFLATED {
                        return self.fail(range.start, format!("a compressed element inflates past {} GiB", MAX_INFLATED >> 30));
                    }
                    Reader { file: self.file, bytes: &inflated, base: self.base + range.start }.read_all(0, out)?;
                }
                _ => {}
            }
            at = next;
        }
        Ok(())
    }
}

/// Every real numeric array of a MAT file image, by name.
pub fn parse(file: &str, bytes: &[u8]) -> Result<BTreeMap<String, MatArray>, MatError> {
    let reader = Reader { file, bytes, base: 0 };
    if bytes.len() < 128 {
        return reader.fail(0, "shorter than a MAT file's 128-byte header");
    }
    if bytes.starts_with(b"\x89HDF") || bytes[..128].windows(4).any(|w| w == b"HDF5") {
        return reader.fail(0, "an HDF5 file (MATLAB -v7.3): save it with -v7 or earlier");
    }
    match &bytes[126..128] {
        b"IM" => {}
        b"MI" => return reader.fail(126, "a big-endian MAT file (not supported)"),
        _ => return reader.fail(126, "not a MATLAB level-5 MAT file (no IM/MI endian mark)"),
    }
    let mut out = BTreeMap::new();
    reader.read_all(128, &mut out)?;
    Ok(out)
}

/// The numeric types the writer can store an array as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatType {
    Double,
    Single,
    Int32,
}

fn element(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len() + 8);
    out.extend(kind.to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out.resize(8 + data.len().div_ceil(8) * 8, 0);
    out
}

/// A MAT file image holding `arrays` (name, dims, column-major values, stored type); each array
/// zlib-compressed when `compress`.
pub fn write(arrays: &[(&str, Vec<usize>, &[f32], MatType)], compress: bool) -> Vec<u8> {
    let mut out = format!("MATLAB 5.0 MAT-file, written by faceforge{:>width$}", "", width = 116 - 38).into_bytes();
    out.resize(116, b' ');
    out.extend([0u8; 8]);
    out.extend(0x0100u16.to_le_bytes());
    out.extend(b"IM");
    for (name, dims, values, kind) in arrays {
        let (class, data_type, bytes): (u32, u32, Vec<u8>) = match kind {
            MatType::Double => (MX_DOUBLE_CLASS, MI_DOUBLE, values.iter().flat_map(|v| (*v as f64).to_le_bytes()).collect()),
            MatType::Single => (MX_SINGLE_CLASS, MI_SINGLE, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            MatType::Int32 => (MX_INT32_CLASS, MI_INT32, values.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect()),
        };
        let mut body = element(MI_UINT32, &[class.to_le_bytes(), 0u32.to_le_bytes()].concat());
        body.extend(element(MI_INT32, &dims.iter().flat_map(|d| (*d as i32).to_le_bytes()).collect::<Vec<u8>>()));
        body.extend(element(MI_INT8, name.as_bytes()));
        body.extend(element(data_type, &bytes));
        let matrix = element(MI_MATRIX, &body);
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut z, &matrix).expect("compressing in memory");
            let packed = z.finish().expect("compressing in memory");
            out.extend(MI_COMPRESSED.to_le_bytes());
            out.extend((packed.len() as u32).to_le_bytes());
            out.extend(packed);
        } else {
            out.extend(matrix);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_round_trip_plain_and_compressed() {
        let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let t = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        for compress in [false, true] {
            let bytes = write(&[("shapeMU", vec![12, 1], &a, MatType::Double), ("tl", vec![2, 3], &t, MatType::Int32), ("x", vec![3, 4], &a, MatType::Single)], compress);
            let arrays = parse("fake.mat", &bytes).unwrap();
            assert_eq!(arrays["shapeMU"], MatArray { dims: vec![12, 1], data: a.clone() });
            assert_eq!(arrays["tl"].data, t.to_vec());
            assert_eq!((arrays["x"].rows(), arrays["x"].cols()), (3, 4));
        }
    }

    #[test]
    fn damage_is_an_error_with_the_byte_offset() {
        let a = [1.0f32; 4];
        let bytes = write(&[("m", vec![2, 2], &a, MatType::Double)], false);
        let cut = &bytes[..bytes.len() - 8];
        let err = parse("cut.mat", cut).unwrap_err().to_string();
        assert!(err.starts_with("cut.mat: byte 128: an element of") && err.contains("past the end"), "{err}");
        assert!(parse("h.mat", b"\x89HDF\r\n\x1a\n").unwrap_err().to_string().contains("shorter"));
        let mut v73 = bytes.clone();
        v73[..4].copy_from_slice(b"\x89HDF");
        assert!(parse("h.mat", &v73).unwrap_err().to_string().contains("HDF5"));
    }
}
