//! A checkpoint folder: a directory on disk, or the files a web page was handed through
//! the File API under their names (a browser tab has no file system). The Hugging Face
//! loader reads config.json, the safetensors files and the tokenizer through it, so one
//! code path, with the same checks and messages, serves both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{bad_file, SharedBytes};
use crate::{Error, Result};

/// Where a checkpoint's files are.
pub enum Folder {
    /// A directory.
    Disk(PathBuf),
    /// Files in memory by their plain names; `name` stands for the folder in messages.
    Memory {
        name: PathBuf,
        files: BTreeMap<String, SharedBytes>,
    },
}

impl Folder {
    /// The files `files` (name, bytes) as a folder called `name`. A name with a path
    /// separator or given twice is refused: the folder is flat, as a model directory is.
    pub fn memory(name: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Folder> {
        let mut map = BTreeMap::new();
        for (file, bytes) in files {
            if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
                return Err(bad_file(
                    name,
                    format!("\"{file}\" is not a plain file name"),
                ));
            }
            if map.insert(file.clone(), SharedBytes::new(bytes)).is_some() {
                return Err(bad_file(name, format!("{file} is given twice")));
            }
        }
        Ok(Folder::Memory {
            name: name.to_path_buf(),
            files: map,
        })
    }

    /// The folder's path (the directory, or the name standing for it).
    pub fn path(&self) -> &Path {
        match self {
            Folder::Disk(dir) => dir,
            Folder::Memory { name, .. } => name,
        }
    }

    /// The path of `file` in the folder, for messages and file-backed tensors.
    pub fn join(&self, file: &str) -> PathBuf {
        self.path().join(file)
    }

    /// Whether the folder holds `file`.
    pub fn has(&self, file: &str) -> bool {
        match self {
            Folder::Disk(dir) => dir.join(file).is_file(),
            Folder::Memory { files, .. } => files.contains_key(file),
        }
    }

    /// `file`'s bytes in memory, or `None` for a folder on disk (read from the file).
    pub fn memory_bytes(&self, file: &str) -> Option<SharedBytes> {
        match self {
            Folder::Disk(_) => None,
            Folder::Memory { files, .. } => files.get(file).cloned(),
        }
    }

    /// The whole of `file` (a small one: JSON, a template), naming it on error.
    pub fn read(&self, file: &str) -> Result<Vec<u8>> {
        let path = self.join(file);
        match self {
            Folder::Disk(_) => std::fs::read(&path).map_err(|e| Error::io(&path, e)),
            Folder::Memory { files, .. } => files
                .get(file)
                .map(|b| b.as_ref().to_vec())
                .ok_or_else(|| bad_file(&path, "no such file among those given")),
        }
    }

    /// `file` as UTF-8 text, with the message reading a file from disk gives when it is
    /// not (so both kinds of folder fail alike).
    pub fn read_text(&self, file: &str) -> Result<String> {
        let path = self.join(file);
        match self {
            Folder::Disk(_) => std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e)),
            Folder::Memory { .. } => String::from_utf8(self.read(file)?)
                .map_err(|_| bad_file(&path, "stream did not contain valid UTF-8")),
        }
    }

    /// `file` parsed as JSON.
    pub fn read_json(&self, file: &str) -> Result<serde_json::Value> {
        serde_json::from_str(&self.read_text(file)?)
            .map_err(|e| bad_file(&self.join(file), format!("invalid JSON: {e}")))
    }
}
