//! `--device cpu|cuda[:N]` → a candle device, with a clear error when CUDA is not compiled in.

use candle_core::Device;

use crate::error::{GenolensError, Result};

/// Parses a device name.
pub fn parse_device(name: &str) -> Result<Device> {
    let fail = |message: String| GenolensError::argument(format!("--device {name}"), message);
    match name {
        "cpu" => Ok(Device::Cpu),
        _ if name == "cuda" || name.starts_with("cuda:") => {
            let ordinal: usize = match name.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| fail("expected cuda or cuda:N".into()))?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                return Err(fail("this binary was built without the `cuda` feature (cargo build --features cuda)".into()));
            }
            Device::new_cuda(ordinal)
                .map_err(|e| fail(format!("no usable CUDA device {ordinal}: {e}")))
        }
        _ => Err(fail("expected cpu, cuda or cuda:N".into())),
    }
}

/// The CPU's matrix-product backend: the built-in `gemm` crate, or the BLAS library the
/// `GENOLENS_BLAS` environment variable names (loaded once, here, so a name that does not load
/// is an error before any work). Returns a description for logs and provenance.
pub fn cpu_matmul_backend() -> Result<String> {
    // The loader's messages start with `GENOLENS_BLAS=<name>: `, which names the setting.
    crate::ops::check_backend().map_err(|message| match message.split_once(": ") {
        Some((setting, rest)) if setting.starts_with(crate::ops::BLAS_VARIABLE) => {
            GenolensError::argument(setting, rest)
        }
        _ => GenolensError::argument(crate::ops::BLAS_VARIABLE, message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_nonsense() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu")
            .unwrap_err()
            .to_string()
            .contains("expected cpu"));
        if !cfg!(feature = "cuda") {
            assert!(parse_device("cuda")
                .unwrap_err()
                .to_string()
                .contains("without the `cuda` feature"));
        }
    }
}
