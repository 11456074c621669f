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
    /// PCI vendor and device ids (0 where the backend gives none): the same
    /// card found through two backends has the same pair.
    pub vendor_id: u32,
    pub device_id: u32,
    /// The card's PCI bus address where the backend reports it (Vulkan's
    /// is exact; DX12's is looked up by the ids, so twins share one).
    pub pci_bus_id: String,
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
    /// The adapter's own memory: its largest device-local heap (Vulkan
    /// only; wgpu reports no memory). On an integrated or software adapter
    /// this is the system's memory, shared with everything else.
    pub memory_bytes: Option<u64>,
    /// What of that heap this process may still allocate, as the driver
    /// judges it (`VK_EXT_memory_budget`: other processes' use counts).
    pub memory_free_bytes: Option<u64>,
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
        )?;
        match (self.memory_bytes, self.memory_free_bytes) {
            (Some(total), Some(free)) => write!(f, ", memory {} MiB ({} MiB free)", total >> 20, free >> 20),
            (Some(total), None) => write!(f, ", memory {} MiB", total >> 20),
            _ => Ok(()),
        }
    }
}

impl AdapterSummary {
    pub fn of(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        let memory = device_memory(adapter);
        AdapterSummary {
            index,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            vendor_id: info.vendor,
            device_id: info.device,
            pci_bus_id: info.device_pci_bus_id.clone(),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            shader_int64: features.contains(wgpu::Features::SHADER_INT64),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            is_software: info.device_type == wgpu::DeviceType::Cpu,
            memory_bytes: memory.map(|m| m.heap_bytes),
            memory_free_bytes: memory.and_then(|m| m.free_bytes),
        }
    }
}

/// A device-local memory heap, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeviceMemory {
    heap_bytes: u64,
    free_bytes: Option<u64>,
}

/// The adapter's largest device-local heap, read from Vulkan (wgpu has no
/// call for it); `None` on other backends. (The gate is wgpu's own for its
/// Vulkan backend, which the workspace's `vulkan` feature turns on.)
#[cfg(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn device_memory(adapter: &wgpu::Adapter) -> Option<DeviceMemory> {
    use ash::vk;
    // SAFETY: the raw instance and physical device are only queried (no
    // object is created or destroyed), while `hal` keeps the adapter alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let shared = hal.shared_instance();
    let instance = shared.raw_instance();
    let physical = hal.raw_physical_device();
    // SAFETY: as above; `physical` belongs to `instance`.
    let properties = unsafe { instance.get_physical_device_memory_properties(physical) };
    let (index, heap) = properties
        .memory_heaps_as_slice()
        .iter()
        .enumerate()
        .filter(|(_, heap)| heap.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
        .max_by_key(|(_, heap)| heap.size)?;
    // The budget extension's query is a Vulkan 1.1 call on the instance and
    // needs the device to offer the extension, as wgpu judges it (it hides
    // the extension on drivers whose accounting is broken, e.g. RADV).
    let capabilities = hal.physical_device_capabilities();
    let has_budget = shared.instance_api_version() >= vk::API_VERSION_1_1
        && capabilities.properties().api_version >= vk::API_VERSION_1_1
        && capabilities.supports_extension(ash::ext::memory_budget::NAME);
    let free_bytes = has_budget
        .then(|| {
            let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
            let mut properties = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
            // SAFETY: as above; the chained struct outlives the call.
            unsafe { instance.get_physical_device_memory_properties2(physical, &mut properties) };
            budget.heap_budget[index].saturating_sub(budget.heap_usage[index])
        })
        // Under an eighth of the heap is taken for a driver's misreport
        // rather than a full card: sized from the heap instead, the tuner
        // still stops where allocation fails, but a misreport would leave
        // it at the smallest batch.
        .filter(|free| *free >= heap.size / 8);
    Some(DeviceMemory { heap_bytes: heap.size, free_bytes })
}

#[cfg(not(any(windows, target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn device_memory(_adapter: &wgpu::Adapter) -> Option<DeviceMemory> {
    None
}

/// Summaries of every adapter.
pub fn summaries() -> Vec<AdapterSummary> {
    enumerate().iter().enumerate().map(|(i, a)| AdapterSummary::of(i, a)).collect()
}
