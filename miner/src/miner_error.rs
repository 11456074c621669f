//! The miner's one error type, and the exit-code table.
//!
//! Library functions return [`MinerError`]; `main.rs` prints it once, on one
//! line, and exits with [`MinerError::exit_code`].

use crate::client::session::SessionEnd;

#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    /// What the user asked for is wrong: a URL, wallet or flag, bad hex,
    /// out-of-limit params, an unreadable file. Exit code 2.
    #[error("{0}")]
    BadInput(String),
    /// Every pool refused this miner (its wallet address, its worker id).
    /// Exit code 3.
    #[error("{0}")]
    Refused(String),
    /// Banned by every pool, with `--exit-on-ban`; the message says for how
    /// long. Exit code 4.
    #[error("{0}")]
    Banned(String),
    /// No device can mine. Exit code 5.
    #[error("no usable device: {0}")]
    NoDevice(String),
    /// Anything else at run time. Exit code 1.
    #[error("{0}")]
    Runtime(String),
}

impl MinerError {
    /// The process exit code for this error (also in `vision-miner --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            MinerError::Runtime(_) => 1,
            MinerError::BadInput(_) => 2,
            MinerError::Refused(_) => 3,
            MinerError::Banned(_) => 4,
            MinerError::NoDevice(_) => 5,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        MinerError::BadInput(message.into())
    }

    pub fn runtime(message: impl std::fmt::Display) -> Self {
        MinerError::Runtime(message.to_string())
    }
}

impl From<crate::InputError> for MinerError {
    fn from(err: crate::InputError) -> Self {
        MinerError::BadInput(err.0)
    }
}

impl From<visionx::Error> for MinerError {
    fn from(err: visionx::Error) -> Self {
        MinerError::BadInput(err.to_string())
    }
}

impl From<SessionEnd> for MinerError {
    fn from(end: SessionEnd) -> Self {
        match end {
            SessionEnd::Refused(_) => MinerError::Refused(end.to_string()),
            SessionEnd::Banned { .. } => MinerError::Banned(end.to_string()),
        }
    }
}

/// Naming an adapter that is not there (`--device`) is bad input, as in
/// `bench`; having none at all under `--backend gpu` is no usable device.
impl From<crate::device_selection::SelectionError> for MinerError {
    fn from(err: crate::device_selection::SelectionError) -> Self {
        match err {
            crate::device_selection::SelectionError::NoSuchDevice { .. } => MinerError::BadInput(err.to_string()),
            crate::device_selection::SelectionError::NoAdapter => MinerError::NoDevice(err.to_string()),
        }
    }
}

/// A GPU failure in a command (`hash --engine gpu`, the probe) is a runtime
/// failure, and naming an adapter that is not there is bad input (as in
/// `bench`); mining itself never ends on one (the device is disabled, and
/// [`MinerError::NoDevice`] is for having no device at all).
impl From<crate::backend::gpu::GpuError> for MinerError {
    fn from(err: crate::backend::gpu::GpuError) -> Self {
        match err {
            crate::backend::gpu::GpuError::NoSuchDevice(_) => MinerError::BadInput(err.to_string()),
            _ => MinerError::Runtime(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_exit_code() {
        let table = [
            (MinerError::Runtime("x".into()), 1),
            (MinerError::BadInput("x".into()), 2),
            (MinerError::Refused("x".into()), 3),
            (MinerError::Banned("x".into()), 4),
            (MinerError::NoDevice("x".into()), 5),
            (SessionEnd::Banned { url: "u".into(), secs: 5 }.into(), 4),
            (crate::backend::gpu::GpuError::NoSuchDevice(9).into(), 2),
            (crate::backend::gpu::GpuError::NoAdapter.into(), 1),
            (crate::device_selection::SelectionError::NoSuchDevice { index: 9, count: 1 }.into(), 2),
            (crate::device_selection::SelectionError::NoAdapter.into(), 5),
        ];
        for (err, code) in table {
            assert_eq!(err.exit_code(), code, "{err:?}");
        }
    }
}
