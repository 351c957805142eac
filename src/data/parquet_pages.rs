//! A pre-read of every Parquet page header, so that a malformed file is refused before the
//! `parquet` reader allocates for what its headers claim (found by `fuzz/parquet_table`):
//! - a dictionary page claiming more entries than its bytes can hold made the reader size the
//!   dictionary for the claim (gigabytes from a 4 KiB file);
//! - a page claiming an uncompressed size far past what its codec can expand its compressed
//!   bytes to made the reader zero-fill that size (up to 2 GiB) before decompressing.
//!
//! The checks hold for every file a Parquet writer makes: a PLAIN dictionary entry takes at least
//! its physical width (a BYTE_ARRAY entry its 4-byte length); Snappy expands at most ≈ 21× (a
//! 3-byte copy writes 64 bytes), deflate at most 1032×; an uncompressed page is its own size.
//! Headers are read from the column chunk's byte range with a small Thrift compact-protocol
//! skipper that allocates nothing (the `parquet` crate's own header reader is private, and the
//! `thrift` crate allocates whatever length a string field claims).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use parquet::basic::{Compression, Type as PhysicalType};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};

use crate::error::{GenolensError, Result};

/// The largest page header read (headers hold statistics, which writers truncate).
const MAX_HEADER_BYTES: usize = 16 << 20;

/// Refuses a Parquet file whose page headers claim more than their bytes can hold; `metadata`
/// is the footer the caller's reader already parsed.
pub fn check_pages(path: &Path, metadata: &ParquetMetaData) -> Result<()> {
    let malformed = |message: String| GenolensError::ParquetRead {
        path: path.to_path_buf(),
        message: format!(
            "malformed Parquet file: {message}; is the file complete and written by a Parquet \
             writer?"
        ),
    };
    let mut file = File::open(path).map_err(|e| GenolensError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| GenolensError::io(path, e))?
        .len();
    for (group, row_group) in metadata.row_groups().iter().enumerate() {
        for chunk in row_group.columns() {
            let name = chunk.column_path().string();
            if !matches!(
                chunk.compression(),
                Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::GZIP(_)
            ) {
                return Err(GenolensError::ParquetRead {
                    path: path.to_path_buf(),
                    message: format!(
                        "column {name:?} is compressed with {}, which genolens does not read \
                         (it reads uncompressed, Snappy and gzip Parquet); write the table with \
                         Snappy: pandas `to_parquet(path, compression=\"snappy\")`, polars \
                         `write_parquet(path, compression=\"snappy\")`, R arrow \
                         `write_parquet(x, path, compression = \"snappy\")`",
                        codec_name(chunk.compression())
                    ),
                });
            }
            check_chunk(&mut file, file_len, chunk).map_err(|problem| {
                malformed(format!("row group {group}, column {name:?}: {problem}"))
            })?;
        }
    }
    Ok(())
}

/// A codec's usual name (`Debug` adds the level).
fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::UNCOMPRESSED => "no compression",
        Compression::SNAPPY => "Snappy",
        Compression::GZIP(_) => "gzip",
        Compression::LZO => "LZO",
        Compression::BROTLI(_) => "Brotli",
        Compression::LZ4 | Compression::LZ4_RAW => "LZ4",
        Compression::ZSTD(_) => "zstd",
    }
}

/// Walks the page headers of one column chunk; the error says what is impossible.
fn check_chunk(
    file: &mut File,
    file_len: u64,
    chunk: &ColumnChunkMetaData,
) -> std::result::Result<(), String> {
    let start = chunk
        .dictionary_page_offset()
        .unwrap_or_else(|| chunk.data_page_offset());
    let length = chunk.compressed_size();
    if start < 0 || length < 0 {
        return Err(format!(
            "the column chunk starts at {start} and is {length} bytes long (negative)"
        ));
    }
    let (start, length) = (start as u64, length as u64);
    let end = start
        .checked_add(length)
        .filter(|&end| end <= file_len)
        .ok_or_else(|| {
            format!("the column chunk ({length} bytes at {start}) runs past the file's {file_len} bytes")
        })?;
    let bits = match chunk.column_type() {
        PhysicalType::BOOLEAN => 1,
        PhysicalType::INT32 | PhysicalType::FLOAT | PhysicalType::BYTE_ARRAY => 32,
        PhysicalType::INT64 | PhysicalType::DOUBLE => 64,
        PhysicalType::INT96 => 96,
        PhysicalType::FIXED_LEN_BYTE_ARRAY => 8 * chunk.column_descr().type_length().max(1) as u64,
    };
    let expansion: Option<u64> = match chunk.compression() {
        Compression::UNCOMPRESSED => Some(1),
        Compression::SNAPPY => Some(22),
        Compression::GZIP(_) => Some(1032),
        // Codecs this build cannot decompress: the reader refuses them itself.
        _ => None,
    };
    let mut position = start;
    let mut window = Vec::new();
    while position < end {
        let remaining = (end - position) as usize;
        // Headers are tens to hundreds of bytes (more with long statistics): start small, grow 4×.
        let mut want = remaining.min(1 << 10);
        let (header, header_len) = loop {
            window.resize(want, 0);
            file.seek(SeekFrom::Start(position))
                .and_then(|_| file.read_exact(&mut window))
                .map_err(|e| format!("reading a page header at byte {position}: {e}"))?;
            match PageHeader::parse(&window) {
                Ok(parsed) => break parsed,
                Err(Truncated::Yes) if want < remaining.min(MAX_HEADER_BYTES) => {
                    want = (want * 4).min(remaining.min(MAX_HEADER_BYTES));
                }
                Err(Truncated::Yes) => {
                    return Err(format!(
                        "the page header at byte {position} does not end inside the column chunk"
                    ))
                }
                Err(Truncated::Malformed(what)) => {
                    return Err(format!("the page header at byte {position}: {what}"))
                }
            }
        };
        let (compressed, uncompressed) = (header.compressed_size, header.uncompressed_size);
        if compressed < 0 || uncompressed < 0 {
            return Err(format!(
                "the page at byte {position} claims sizes {compressed} (compressed) and \
                 {uncompressed} (uncompressed)"
            ));
        }
        let (compressed, uncompressed) = (compressed as u64, uncompressed as u64);
        let next = position + header_len as u64 + compressed;
        if next > end {
            return Err(format!(
                "the page at byte {position} ({compressed} bytes) runs past its column chunk's \
                 end at byte {end}"
            ));
        }
        if let Some(ratio) = expansion {
            // Data page v2 keeps its levels uncompressed: allow a little slack beyond the codec.
            let most = compressed * ratio + 1024;
            if uncompressed > most {
                return Err(format!(
                    "the page at byte {position} claims {uncompressed} bytes uncompressed from \
                     {compressed} compressed ({:?} expands at most {ratio}×)",
                    chunk.compression()
                ));
            }
        }
        if let Some(entries) = header.dictionary_entries {
            let holds = uncompressed * 8 / bits;
            if entries < 0 || entries as u64 > holds {
                return Err(format!(
                    "the dictionary page at byte {position} claims {entries} entries in \
                     {uncompressed} bytes (at most {holds} fit)"
                ));
            }
        }
        position = next;
    }
    Ok(())
}

/// The fields of a page header the checks need.
struct PageHeader {
    uncompressed_size: i64,
    compressed_size: i64,
    /// `num_values` of a dictionary page header.
    dictionary_entries: Option<i64>,
}

/// Why a header could not be read from a window of bytes.
enum Truncated {
    /// The window ended first (a larger one may hold it).
    Yes,
    /// The bytes are not a Thrift compact-protocol PageHeader.
    Malformed(String),
}

/// A cursor over Thrift compact-protocol bytes (the protocol Parquet writes its headers in).
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Compact-protocol type ids.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// Deepest nesting skipped (a page header nests three deep; crafted input could nest forever).
const MAX_DEPTH: usize = 32;

impl PageHeader {
    /// Reads a PageHeader struct from the start of `bytes`; returns it and its length in bytes.
    fn parse(bytes: &[u8]) -> std::result::Result<(PageHeader, usize), Truncated> {
        let mut cursor = Compact { bytes, at: 0 };
        let mut header = PageHeader {
            uncompressed_size: -1,
            compressed_size: -1,
            dictionary_entries: None,
        };
        let (mut seen_uncompressed, mut seen_compressed) = (false, false);
        let mut last = 0i16;
        while let Some((id, kind)) = cursor.field(&mut last)? {
            match (id, kind) {
                (2, I32) => {
                    header.uncompressed_size = cursor.i32()?;
                    seen_uncompressed = true;
                }
                (3, I32) => {
                    header.compressed_size = cursor.i32()?;
                    seen_compressed = true;
                }
                (7, STRUCT) => {
                    // DictionaryPageHeader { 1: i32 num_values, 2: Encoding, 3: bool is_sorted }
                    let mut inner_last = 0i16;
                    while let Some((inner_id, inner_kind)) = cursor.field(&mut inner_last)? {
                        if (inner_id, inner_kind) == (1, I32) {
                            header.dictionary_entries = Some(cursor.i32()?);
                        } else {
                            cursor.skip(inner_kind, 1)?;
                        }
                    }
                }
                _ => cursor.skip(kind, 0)?,
            }
        }
        if !(seen_uncompressed && seen_compressed) {
            return Err(Truncated::Malformed(
                "it has no uncompressed_page_size or compressed_page_size".into(),
            ));
        }
        Ok((header, cursor.at))
    }
}

impl Compact<'_> {
    fn byte(&mut self) -> std::result::Result<u8, Truncated> {
        let byte = *self.bytes.get(self.at).ok_or(Truncated::Yes)?;
        self.at += 1;
        Ok(byte)
    }

    fn advance(&mut self, count: u64) -> std::result::Result<(), Truncated> {
        let end = (self.at as u64).saturating_add(count);
        if end > self.bytes.len() as u64 {
            return Err(Truncated::Yes);
        }
        self.at = end as usize;
        Ok(())
    }

    /// An unsigned LEB128 varint, read as the `parquet` crate reads it (any length; bits past
    /// 64 are dropped), so that the checks see the values the reader will act on.
    fn varint(&mut self) -> std::result::Result<u64, Truncated> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f).wrapping_shl(shift);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift = shift.saturating_add(7);
        }
    }

    fn varint_signed(&mut self) -> std::result::Result<i64, Truncated> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// An i32 field, truncated from the zig-zag varint as the `parquet` crate truncates it.
    fn i32(&mut self) -> std::result::Result<i64, Truncated> {
        Ok(i64::from(self.varint_signed()? as i32))
    }

    /// The next field's id and type, or `None` at the struct's stop byte.
    fn field(&mut self, last: &mut i16) -> std::result::Result<Option<(i16, u8)>, Truncated> {
        let byte = self.byte()?;
        if byte == 0 {
            return Ok(None);
        }
        let kind = byte & 0x0f;
        let delta = (byte >> 4) as i16;
        let id = if delta == 0 {
            let raw = self.varint_signed()?;
            i16::try_from(raw)
                .map_err(|_| Truncated::Malformed(format!("field id {raw} out of range")))?
        } else {
            last.wrapping_add(delta)
        };
        *last = id;
        Ok(Some((id, kind)))
    }

    /// Skips one value of compact type `kind` (a collection's element types use the same ids).
    fn skip(&mut self, kind: u8, depth: usize) -> std::result::Result<(), Truncated> {
        if depth > MAX_DEPTH {
            return Err(Truncated::Malformed(format!(
                "nested more than {MAX_DEPTH} deep"
            )));
        }
        match kind {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.advance(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            BINARY => {
                let length = self.varint()?;
                self.advance(length)
            }
            LIST | SET => {
                let head = self.byte()?;
                let element = head & 0x0f;
                let count = match head >> 4 {
                    15 => self.varint()?,
                    small => u64::from(small),
                };
                self.skip_elements(element, count, depth)
            }
            MAP => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                for _ in 0..count {
                    self.skip_element(kinds >> 4, depth)?;
                    self.skip_element(kinds & 0x0f, depth)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last = 0i16;
                while let Some((_, field_kind)) = self.field(&mut last)? {
                    self.skip(field_kind, depth + 1)?;
                }
                Ok(())
            }
            other => Err(Truncated::Malformed(format!("unknown Thrift type {other}"))),
        }
    }

    /// Skips `count` collection elements; every element takes at least one byte, so a count
    /// past the bytes left ends the window instead of looping.
    fn skip_elements(
        &mut self,
        element: u8,
        count: u64,
        depth: usize,
    ) -> std::result::Result<(), Truncated> {
        if count > (self.bytes.len() - self.at) as u64 {
            return Err(Truncated::Yes);
        }
        for _ in 0..count {
            self.skip_element(element, depth)?;
        }
        Ok(())
    }

    /// A collection element: booleans are one byte each inside collections.
    fn skip_element(&mut self, element: u8, depth: usize) -> std::result::Result<(), Truncated> {
        match element {
            BOOL_TRUE | BOOL_FALSE => self.advance(1),
            kind => self.skip(kind, depth + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact-protocol PageHeader: type, sizes, then a dictionary page header.
    fn header(uncompressed: i64, compressed: i64, entries: Option<i64>) -> Vec<u8> {
        fn zigzag(value: i64, out: &mut Vec<u8>) {
            let mut raw = ((value << 1) ^ (value >> 63)) as u64;
            loop {
                let byte = (raw & 0x7f) as u8;
                raw >>= 7;
                if raw == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        let mut out = vec![0x15];
        zigzag(if entries.is_some() { 2 } else { 0 }, &mut out);
        out.push(0x15);
        zigzag(uncompressed, &mut out);
        out.push(0x15);
        zigzag(compressed, &mut out);
        // field 4 (crc, i32), skipped
        out.push(0x15);
        zigzag(12345, &mut out);
        if let Some(entries) = entries {
            out.push(0x3c); // field 7 (delta 3), struct
            out.push(0x15);
            zigzag(entries, &mut out);
            out.push(0x15);
            zigzag(0, &mut out);
            out.push(0x11); // is_sorted: true
            out.push(0);
        }
        out.push(0);
        out
    }

    #[test]
    fn reads_sizes_and_dictionary_entries_and_the_header_length() {
        let bytes = header(400, 123, Some(50));
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[9, 9, 9]);
        let Ok((parsed, length)) = PageHeader::parse(&padded) else {
            panic!("the header should parse")
        };
        assert_eq!(length, bytes.len());
        assert_eq!(parsed.uncompressed_size, 400);
        assert_eq!(parsed.compressed_size, 123);
        assert_eq!(parsed.dictionary_entries, Some(50));
        let Ok((data, _)) = PageHeader::parse(&header(-7, 2_000_000_000, None)) else {
            panic!("the header should parse")
        };
        assert_eq!(data.uncompressed_size, -7);
        assert_eq!(data.compressed_size, 2_000_000_000);
        assert_eq!(data.dictionary_entries, None);
    }

    #[test]
    fn a_cut_header_is_truncated_and_garbage_is_malformed() {
        let bytes = header(400, 123, Some(50));
        for cut in 0..bytes.len() {
            assert!(matches!(
                PageHeader::parse(&bytes[..cut]),
                Err(Truncated::Yes)
            ));
        }
        assert!(matches!(
            PageHeader::parse(&[0x1d, 0, 0]),
            Err(Truncated::Malformed(_))
        ));
        // A list claiming a billion elements in a few bytes ends the window, fast.
        assert!(matches!(
            PageHeader::parse(&[0x19, 0xf5, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0]),
            Err(Truncated::Yes)
        ));
        // Structs nested past the limit are refused, not recursed into.
        let mut deep = vec![0x1c; 100];
        deep.push(0);
        assert!(matches!(
            PageHeader::parse(&deep),
            Err(Truncated::Malformed(_))
        ));
    }
}
