//! JSON plumbing shared by the instances and results readers: splitting a top-level array into
//! element slices (so that the elements parse in parallel), positions for error messages, and
//! serde visitors for the COCO field shapes (ids, boxes, segmentations) that avoid buffering.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::Error;

/// 1-based line and column of a byte offset, as serde_json reports them.
pub(crate) fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

/// Turns a serde_json error raised while parsing `bytes[start..]` into a positioned error.
pub(crate) fn element_error(
    file: &str,
    bytes: &[u8],
    start: usize,
    what: &str,
    err: &serde_json::Error,
) -> Error {
    let (base_line, base_col) = line_col(bytes, start);
    let (line, column) = if err.line() <= 1 {
        (base_line, base_col + err.column().saturating_sub(1))
    } else {
        (base_line + err.line() - 1, err.column())
    };
    // serde_json appends its own "at line L column C" (relative to the slice); drop it.
    let message = err.to_string();
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message,
    };
    Error::Json {
        file: file.to_string(),
        line,
        column,
        message: format!("{what}: {message}"),
    }
}

/// A whole-document serde_json error, positioned.
pub(crate) fn document_error(file: &str, err: &serde_json::Error) -> Error {
    let message = err.to_string();
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message,
    };
    Error::Json {
        file: file.to_string(),
        line: err.line(),
        column: err.column(),
        message,
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// The first position at or after `pos` that may hold `"` or `\\`, looking at eight bytes at a
/// time (compressed RLE strings make up most of a mask results file).
#[inline]
fn skip_plain_string_bytes(bytes: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A zero byte in either word means a quote or backslash in the chunk.
        let found = (quote.wrapping_sub(ONES) & !quote & HIGHS)
            | (backslash.wrapping_sub(ONES) & !backslash & HIGHS);
        if found != 0 {
            return pos + (found.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    pos
}

/// Byte ranges `[start, end)` of the elements of the JSON array in `bytes[begin..end]`.
///
/// Only the structure is scanned (strings, nesting); each element is later parsed (and fully
/// validated) by serde_json. `None` means the text is not a well-formed array, in which case
/// the caller parses the whole document with serde_json to get its precise error.
pub(crate) fn split_array(bytes: &[u8], begin: usize, end: usize) -> Option<Vec<(usize, usize)>> {
    let bytes = &bytes[..end];
    let mut pos = skip_ws(bytes, begin);
    if bytes.get(pos) != Some(&b'[') {
        return None;
    }
    pos = skip_ws(bytes, pos + 1);
    let mut spans = Vec::new();
    if bytes.get(pos) == Some(&b']') {
        return (skip_ws(bytes, pos + 1) == bytes.len()).then_some(spans);
    }
    loop {
        let start = pos;
        let mut depth = 0usize;
        loop {
            let byte = *bytes.get(pos)?;
            match byte {
                b'"' => {
                    pos += 1;
                    loop {
                        pos = skip_plain_string_bytes(bytes, pos);
                        match *bytes.get(pos)? {
                            b'"' => break,
                            b'\\' => pos += 2,
                            _ => pos += 1,
                        }
                    }
                    pos += 1;
                }
                b'{' | b'[' => {
                    depth += 1;
                    pos += 1;
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    pos += 1;
                }
                b',' | b']' if depth == 0 => break,
                b'}' => return None,
                _ => pos += 1,
            }
        }
        let mut element_end = pos;
        while element_end > start && matches!(bytes[element_end - 1], b' ' | b'\t' | b'\n' | b'\r')
        {
            element_end -= 1;
        }
        if element_end == start {
            return None;
        }
        spans.push((start, element_end));
        if bytes[pos] == b']' {
            return (skip_ws(bytes, pos + 1) == bytes.len()).then_some(spans);
        }
        pos = skip_ws(bytes, pos + 1);
    }
}

/// An integer id; integral floats (`3.0`) are accepted as Python's dict keys accept them.
pub(crate) fn deserialize_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(IdVisitor)
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer id")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("id {v} does not fit in 64 bits")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(v as i64)
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }
}

/// `iscrowd`: a number (non-zero is crowd) or a boolean.
pub(crate) fn deserialize_flag<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<bool, D::Error> {
    struct FlagVisitor;
    impl Visitor<'_> for FlagVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("0, 1 or a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
            Ok(v != 0.0)
        }
    }
    deserializer.deserialize_any(FlagVisitor)
}

/// A list of numbers kept as its first four values and its length (a box must have four).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NumberQuad {
    pub values: [f64; 4],
    pub len: usize,
}

impl<'de> serde::Deserialize<'de> for NumberQuad {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuadVisitor;
        impl<'de> Visitor<'de> for QuadVisitor {
            type Value = NumberQuad;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of numbers [x, y, width, height]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NumberQuad, A::Error> {
                let mut quad = NumberQuad::default();
                while let Some(value) = seq.next_element::<f64>()? {
                    if quad.len < 4 {
                        quad.values[quad.len] = value;
                    }
                    quad.len += 1;
                }
                Ok(quad)
            }
        }
        deserializer.deserialize_seq(QuadVisitor)
    }
}

/// `segmentation` as written: polygons, or an RLE object with list or string counts.
#[derive(Debug)]
pub(crate) enum RawSegmentation<'a> {
    Polygons(Vec<Vec<f64>>),
    Rle {
        size: Option<(u64, u64)>,
        counts: Option<RawCounts<'a>>,
    },
}

#[derive(Debug)]
pub(crate) enum RawCounts<'a> {
    List(Vec<i64>),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawSegmentation<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SegmentationVisitor(std::marker::PhantomData))
    }
}

struct SegmentationVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for SegmentationVisitor<'a> {
    type Value = RawSegmentation<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of polygons or an RLE object {\"size\": [h, w], \"counts\": …}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut polygons = Vec::new();
        while let Some(polygon) = seq.next_element::<Vec<f64>>()? {
            polygons.push(polygon);
        }
        Ok(RawSegmentation::Polygons(polygons))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut size = None;
        let mut counts = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "size" => {
                    let pair: Vec<u64> = map.next_value()?;
                    if pair.len() != 2 {
                        return Err(de::Error::custom(format!(
                            "RLE size has {} numbers, expected [height, width]",
                            pair.len()
                        )));
                    }
                    size = Some((pair[0], pair[1]));
                }
                "counts" => {
                    counts = Some(map.next_value_seed(CountsSeed(std::marker::PhantomData))?)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawSegmentation::Rle { size, counts })
    }
}

struct CountsSeed<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for CountsSeed<'a> {
    type Value = RawCounts<'a>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for CountsSeed<'a> {
    type Value = RawCounts<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLE counts: a list of run lengths or a compressed string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(RawCounts::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RawCounts::Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(RawCounts::Text(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut counts = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(count) = seq.next_element::<i64>()? {
            counts.push(count);
        }
        Ok(RawCounts::List(counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_array_finds_elements() {
        let text = br#" [ {"a": "x,]"}, [1, [2]] ,3 ] "#;
        let spans = split_array(text, 0, text.len()).unwrap();
        let parts: Vec<&str> = spans
            .iter()
            .map(|&(s, e)| std::str::from_utf8(&text[s..e]).unwrap())
            .collect();
        assert_eq!(parts, vec![r#"{"a": "x,]"}"#, "[1, [2]]", "3"]);
        assert_eq!(split_array(b"[]", 0, 2).unwrap().len(), 0);
        assert!(split_array(b"[1,", 0, 3).is_none());
        assert!(split_array(b"[1,]", 0, 4).is_none());
        assert!(split_array(b"[1] x", 0, 5).is_none());
        assert!(split_array(b"{}", 0, 2).is_none());
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_col(b"ab", 0), (1, 1));
    }
}
