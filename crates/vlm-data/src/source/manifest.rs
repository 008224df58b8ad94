//! Writing a manifest: one [`Conversation`] as JSON per line (JSONL).

use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use crate::conversation::Conversation;

use super::Sink;

/// How a manifest names image files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePaths {
    /// Absolute paths (made absolute against the working directory, `.` and `..` removed).
    Absolute,
    /// Paths relative to this folder, normally the manifest's own folder, so that the manifest
    /// and its images can move together; a path that has no relative form (another drive) is
    /// written absolute.
    RelativeTo(PathBuf),
}

/// A [`Sink`] writing each sample as one JSON line, with its image path rewritten per
/// [`ImagePaths`]. Wrap the file in a `BufWriter`; call [`Self::into_inner`] and flush at the end.
#[derive(Debug)]
pub struct ManifestWriter<W: Write> {
    out: W,
    paths: ImagePaths,
    written: usize,
}

impl<W: Write> ManifestWriter<W> {
    /// A writer to `out` (a relative [`ImagePaths::RelativeTo`] folder is taken against the
    /// working directory).
    pub fn new(out: W, paths: ImagePaths) -> io::Result<Self> {
        let paths = match paths {
            ImagePaths::Absolute => ImagePaths::Absolute,
            ImagePaths::RelativeTo(base) => ImagePaths::RelativeTo(absolute(&base)?),
        };
        Ok(Self {
            out,
            paths,
            written: 0,
        })
    }

    /// Lines written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn image_path(&self, image: &Path) -> io::Result<PathBuf> {
        let image = absolute(image)?;
        Ok(match &self.paths {
            ImagePaths::Absolute => image,
            ImagePaths::RelativeTo(base) => relative(&image, base).unwrap_or(image),
        })
    }
}

impl<W: Write> Sink for ManifestWriter<W> {
    fn accept(&mut self, mut sample: Conversation) -> io::Result<()> {
        if let Some(image) = &sample.image {
            sample.image = Some(self.image_path(image)?);
        }
        serde_json::to_writer(&mut self.out, &sample)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }
}

/// `path` made absolute against the working directory, with `.` and `..` resolved lexically
/// (symbolic links are not followed).
fn absolute(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for part in std::path::absolute(path)?.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `path` relative to `base` (both absolute and normalised), with `..` where needed; `None`
/// when they do not share a root.
fn relative(path: &Path, base: &Path) -> Option<PathBuf> {
    let (mut p, mut b) = (path.components().peekable(), base.components().peekable());
    if p.peek() != b.peek() {
        return None;
    }
    while p.peek().is_some() && p.peek() == b.peek() {
        p.next();
        b.next();
    }
    let mut out: PathBuf = b.map(|_| Component::ParentDir).collect();
    out.extend(p);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_out_of_the_base() {
        let r = |p: &str, b: &str| relative(Path::new(p), Path::new(b)).unwrap();
        assert_eq!(
            r("/d/sample/images/a.png", "/d/sample"),
            Path::new("images/a.png")
        );
        assert_eq!(r("/d/img/a.png", "/d/out"), Path::new("../img/a.png"));
        assert_eq!(r("/a.png", "/x/y"), Path::new("../../a.png"));
    }

    #[test]
    fn absolute_resolves_dots() {
        let a = absolute(Path::new("/d/x/../y/./a.png")).unwrap();
        assert_eq!(a, Path::new("/d/y/a.png"));
    }
}
