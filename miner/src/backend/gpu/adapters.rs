//! Finding GPU adapters and describing them.

use std::sync::OnceLock;

use serde::Serialize;

/// The backends the miner looks for adapters on (compute-capable native APIs).
pub fn backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}

/// The process's one wgpu instance, created on first use and kept (it is
/// never changed after). A fresh instance per enumeration broke NVIDIA's
/// Vulkan driver on an H200: once the first instance was dropped, the next
/// enumeration found no adapter, and later device use crashed the process.
pub fn instance() -> &'static wgpu::Instance {
    static INSTANCE: OnceLock<wgpu::Instance> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = backends();
        wgpu::Instance::new(desc)
    })
}

/// Every adapter wgpu finds, in a stable order (the order `--device N` indexes).
pub fn enumerate() -> Vec<wgpu::Adapter> {
    pollster::block_on(instance().enumerate_adapters(backends()))
}

/// What `vision-miner devices` shows of an adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// Native 64-bit integers in shaders (`Features::SHADER_INT64`).
    pub shader_int64: bool,
    pub timestamp_query: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_size_x: u32,
    /// A software rasteriser on the CPU (lavapipe, WARP): usable, but it
    /// competes with the CPU backend for the same cores.
    pub is_software: bool,
}

/// One line of `vision-miner devices`.
impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gpu #{}: {} [{} {}{}] int64 {}, timestamps {}, max buffer {} MiB, max storage binding {} MiB, {} storage buffers/stage, driver {}",
            self.index,
            self.name,
            self.backend,
            self.device_type,
            if self.is_software { ", software" } else { "" },
            if self.shader_int64 { "yes" } else { "no (emulated shader)" },
            if self.timestamp_query { "yes" } else { "no" },
            self.max_buffer_size >> 20,
            self.max_storage_buffer_binding_size >> 20,
            self.max_storage_buffers_per_shader_stage,
            if self.driver.is_empty() { "unknown" } else { &self.driver },
        )
    }
}

impl AdapterSummary {
    pub fn of(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        AdapterSummary {
            index,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            shader_int64: features.contains(wgpu::Features::SHADER_INT64),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            is_software: info.device_type == wgpu::DeviceType::Cpu,
        }
    }
}

/// Summaries of every adapter.
pub fn summaries() -> Vec<AdapterSummary> {
    enumerate().iter().enumerate().map(|(i, a)| AdapterSummary::of(i, a)).collect()
}
