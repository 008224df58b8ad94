//! Reading whole files that a user names, with a size limit: a path such as `/dev/zero`, a
//! FIFO or a mistaken multi-gigabyte file is refused once the limit is passed, instead of being
//! read until memory runs out. Line-by-line readers (JSONL manifests and evaluation files)
//! bound each line the same way ([`read_line_bounded`]).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// The most bytes [`read_bounded`] reads of a JSON config (`config.json`,
/// `preprocessor_config.json`, a shard index, a data-preparation config): 64 MiB.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// The most bytes [`read_bounded`] reads of a `tokenizer.json`: 256 MiB (Qwen's is 7 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// The most bytes [`read_bounded`] reads of an image file: 256 MiB.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// The most bytes [`read_line_bounded`] reads of one record (a line of a JSONL file): 16 MiB
/// (a LLaVA-Instruct conversation is a few KiB).
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// A size limit in bytes, shown in MiB where that is exact.
struct Limit(u64);

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 % (1 << 20) {
            0 => write!(f, "{} MiB", self.0 >> 20),
            _ => write!(f, "{} bytes", self.0),
        }
    }
}

/// The whole of the file at `path`, refused with an [`io::ErrorKind::FileTooLarge`] error
/// (whose message states the limit) when it holds more than `limit` bytes; at most
/// `limit + 1` bytes are ever read. Callers wrap the error with the path, as for any other
/// read failure.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    within(bytes.len(), limit, "larger than", "this kind of file")?;
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text (invalid UTF-8 is an [`io::ErrorKind::InvalidData`] error).
pub fn read_bounded_string(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Appends the next line of `reader` (through its `\n`) to `buf` and returns its length (0 at
/// the end), refusing a line of more than `limit` bytes with an [`io::ErrorKind::FileTooLarge`]
/// error that states the limit; at most `limit + 1` bytes are read for it.
pub fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: u64,
) -> io::Result<usize> {
    let len = reader
        .take(limit.saturating_add(1))
        .read_until(b'\n', buf)?;
    within(len, limit, "a line longer than", "one record")
}

/// `len` when it is at most `limit`, else the [`io::ErrorKind::FileTooLarge`] error
/// "`{what}` the `{limit}` limit for `{kind}`".
fn within(len: usize, limit: u64, what: &str, kind: &str) -> io::Result<usize> {
    if len as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{what} the {} limit for {kind}", Limit(limit)),
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_at_the_limit() {
        let err = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("1 MiB limit"), "{err}");
    }

    #[test]
    fn lines_are_read_up_to_the_limit() {
        let mut reader = io::Cursor::new(b"ab\ncdef\ng".to_vec());
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut reader, &mut buf, 3).unwrap(), 3);
        assert_eq!(buf, b"ab\n");
        buf.clear();
        let err = read_line_bounded(&mut reader, &mut buf, 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("3 bytes limit"), "{err}");
        let mut endless = io::BufReader::new(File::open("/dev/zero").unwrap());
        let err = read_line_bounded(&mut endless, &mut Vec::new(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("1 MiB limit"), "{err}");
    }

    #[test]
    fn a_file_within_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "{}").unwrap();
        assert_eq!(read_bounded_string(&path, 2).unwrap(), "{}");
        let err = read_bounded(&path, 1).unwrap_err();
        assert!(err.to_string().contains("1 bytes limit"), "{err}");
    }
}
