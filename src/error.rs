//! The crate's one error type. Every message is a single line that names the thing at
//! fault (a file, a layer, a device) and the problem, so the CLI can print it as is.

use std::path::PathBuf;

/// Everything that can go wrong in boha.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched the request (or none exists at all).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// The adapter refused the device request.
    #[error("could not open device '{adapter}': {reason}")]
    DeviceRequest { adapter: String, reason: String },
    /// A submit or map did not finish within the poll timeout.
    #[error("GPU did not finish within {0:?} (hung submit or lost device)")]
    DeviceTimeout(std::time::Duration),
    /// The device was lost (driver reset, removal, out of memory in the driver).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// wgpu validation or out-of-memory error caught by an error scope.
    #[error("GPU error in {context}: {message}")]
    Gpu { context: String, message: String },
    /// A shader failed to parse or validate (reported by naga).
    #[error("shader {shader}: {message}")]
    Shader { shader: String, message: String },
    /// Shapes that do not fit the op.
    #[error("shape error in {op}: {message}")]
    Shape { op: String, message: String },
    /// A user-supplied value that is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An I/O problem with a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose contents are malformed.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for a [`Error::Shape`] error.
    pub fn shape(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            message: message.into(),
        }
    }

    /// The machine has no adapter at all: the one remedy boha offers, named.
    pub fn no_adapter_found() -> Self {
        Error::NoAdapter(
            "wgpu found none: run `boha setup` to install Mesa's software Vulkan driver \
             (lavapipe)"
                .into(),
        )
    }

    /// Shorthand for an [`Error::Io`] error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
