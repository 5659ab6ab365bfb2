//! Where a checkpoint file's bytes are: on disk, read a range at a time, or in memory,
//! for a file a web page was handed through the File API (a browser tab has no file
//! system). The path names the file in messages either way.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use crate::{Error, Result};

/// A whole file's bytes, shared by the header parser and every tensor that reads from
/// them (cloning shares, never copies).
#[derive(Clone)]
pub struct SharedBytes(Arc<Vec<u8>>);

impl SharedBytes {
    pub fn new(bytes: Vec<u8>) -> SharedBytes {
        SharedBytes(Arc::new(bytes))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(bytes: Vec<u8>) -> SharedBytes {
        SharedBytes::new(bytes)
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Two tensors come from the same bytes only if they share them: comparing contents
/// would read a whole model to compare two tensor headers.
impl PartialEq for SharedBytes {
    fn eq(&self, other: &SharedBytes) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.0.len())
    }
}

/// Something read at offsets: an open file or a cursor over [`SharedBytes`].
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Opens `path`, or the bytes standing for it, and returns the reader and its length.
pub(crate) fn open(path: &Path, memory: Option<&SharedBytes>) -> Result<(Box<dyn ReadSeek>, u64)> {
    if let Some(bytes) = memory {
        let len = bytes.len() as u64;
        return Ok((Box::new(std::io::Cursor::new(bytes.clone())), len));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    Ok((Box::new(file), len))
}
