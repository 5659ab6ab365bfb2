//! The async face of the runtime: opening a device and reading results back without
//! blocking. The browser's WebGPU answers adapter and device requests, buffer mappings
//! and queue completion with promises that only its event loop settles, so the web
//! build awaits them; native callers may use these too (they poll the device first,
//! then the futures are already ready) or keep the blocking API.

use super::oneshot;
use super::options::GpuOptions;
use super::{Gpu, Tensor};
use crate::error::{Error, Result};

impl Gpu {
    /// Opens a device without blocking. In the browser: the adapter WebGPU offers
    /// (high-performance preference; `opts.device` does not apply, the browser shows
    /// one adapter); natively: [`Gpu::new`].
    pub async fn new_async(opts: &GpuOptions) -> Result<Gpu> {
        #[cfg(target_arch = "wasm32")]
        {
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends: wgpu::Backends::BROWSER_WEBGPU,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            let adapter = instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    Error::NoAdapter(format!(
                        "the browser offers no WebGPU adapter ({e}); Chromium without a \
                         GPU needs --enable-unsafe-webgpu"
                    ))
                })?;
            Self::from_adapter_async(adapter, opts).await
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Self::new(opts)
        }
    }

    /// [`Gpu::download`] without blocking: the copy is submitted, and the mapping is
    /// awaited. Errors the browser reported since the last check (see `Gpu::scoped`)
    /// surface here.
    pub async fn download_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        let Some((staging, _index)) = self.start_download(t)? else {
            return Ok(Vec::new());
        };
        let (tx, rx) = oneshot::channel();
        staging
            .buffer
            .map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        // Natively nothing maps until the device is polled; the browser maps on its own.
        #[cfg(not(target_arch = "wasm32"))]
        self.wait_for(Some(_index))?;
        let mapped = rx.await;
        self.check_fault()?;
        mapped.map_err(|e| Error::Gpu {
            context: "mapping a download".into(),
            message: e.to_string(),
        })?;
        self.finish_download(&staging.buffer, t)
    }

    /// Waits, without blocking, until everything submitted so far has run.
    pub async fn wait_async(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue.on_submitted_work_done(move || tx.send(()));
        #[cfg(not(target_arch = "wasm32"))]
        self.wait_for(None)?;
        rx.await;
        self.check_fault()
    }
}
