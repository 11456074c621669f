//! Opening a GPU: the adapter, the device and queue, the kernel compiled
//! for it, and the sizes of the per-hash tables for given params (from
//! `visionx`, so every engine sizes them alike). Also the device's health:
//! errors recorded, waits that survive a lost device (`wait_for`), and a
//! lost or hung device never dropped (its `Drop`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::adapters::AdapterSummary;
use super::kernel_layout::{KernelConfig, KernelSpec, WORKGROUP_SIZE};
use super::shader::{self, ShaderVariant, TableProbe};
use super::GpuError;

/// The largest storage binding the kernel is sized for (Vulkan and DX12
/// report at most this; Metal more).
const MAX_BINDING_BYTES: u64 = (1 << 31) - 1;

/// An opened adapter with the kernel compiled for it. Cheap to clone (the
/// wgpu handles are shared).
#[derive(Clone)]
pub struct GpuDevice {
    pub summary: AdapterSummary,
    pub variant: ShaderVariant,
    /// Whether the kernel keeps a bit filter in front of each write table.
    pub filter: bool,
    /// Whether tables are compact ([`TableSlots`]): on hardware GPUs.
    pub compact_tables: bool,
    /// Whether pipelines are built from the kernel compiled without wgpu's
    /// runtime checks (`VISION_GPU_CHECKS=off`; see `GpuDevice::module`).
    pub unchecked_kernel: bool,
    /// Whether each segment's tables and state live in one buffer, bound
    /// as ranges of it (`VISION_GPU_BUFFERS=one-per-segment`), instead of a
    /// buffer each: a quarter of the table and state allocations, for
    /// measuring whether
    /// the Vulkan cliff follows their number (docs/PERFORMANCE.md).
    pub one_buffer_per_segment: bool,
    /// Batches of more hashes fail to allocate, as on a card that small
    /// (`InjectedFault::OutOfMemoryAbove`, test builds only).
    pub(crate) memory_ceiling_hashes: Option<u32>,
    /// The longest a step may run before the device counts as hung (and is
    /// given up, never dropped): [`HANG_TIMEOUT`], or shorter where a test
    /// makes a real dispatch outlast it (`InjectedFault::HangTimeout`).
    pub(crate) hang_timeout: std::time::Duration,
    /// How the kernel probes the tables (`VISION_GPU_PROBE`; see [`TableProbe`]).
    pub table_probe: TableProbe,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// The kernel compiled per [`ModuleKey`] (variant, probe, checks) used
    /// so far: one, in production (the default's is compiled at open).
    modules: Arc<Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>>,
    pipeline_layout: wgpu::PipelineLayout,
    /// A pipeline per [`PipelineKey`] (module, [`KernelSpec`], filter) used
    /// so far: one, in production.
    pipelines: Arc<Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>>,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) timestamps: bool,
    pub(crate) lost: Arc<AtomicBool>,
    /// Set once one reference to the device and queue is kept for the
    /// process's life ([`Drop`]).
    kept_alive: Arc<AtomicBool>,
    pub(crate) errors: Arc<Mutex<Vec<GpuError>>>,
}

/// What a kernel module is compiled from: everything the flags of a
/// (possibly cloned and changed) `GpuDevice` put into its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ModuleKey {
    variant: ShaderVariant,
    probe: TableProbe,
    unchecked: bool,
}

/// What a pipeline is compiled for: its module, its specialisation, and
/// the filter (an override constant outside `KernelSpec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PipelineKey {
    module: ModuleKey,
    spec: KernelSpec,
    filter: bool,
}

/// How long a step may run before its device counts as hung: far past any
/// step the tuner sizes (100-200 ms on hardware), and past a desktop
/// driver's own watchdog (about 2 s), which reports a loss instead.
pub const HANG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A device lost, or hung past a wait's timeout, is never dropped: dropping
/// wgpu's queue waits for the device to go idle without a timeout (on
/// every backend), so a dispatch hung on a card with no watchdog (a
/// headless datacenter GPU) would hang whoever drops it, the miner's
/// start-up or shutdown. One reference to each is kept instead; what the
/// device holds goes with the process.
impl Drop for GpuDevice {
    fn drop(&mut self) {
        if self.lost.load(Ordering::SeqCst) && !self.kept_alive.swap(true, Ordering::SeqCst) {
            std::mem::forget(self.queue.clone());
            std::mem::forget(self.device.clone());
        }
    }
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}

impl GpuDevice {
    /// Opens `adapter` and compiles the kernel. `variant` None picks native
    /// where the adapter has `SHADER_INT64`, emulated otherwise; `filter`
    /// None uses the table filter on software adapters only.
    pub fn open(
        index: usize,
        adapter: &wgpu::Adapter,
        variant: Option<ShaderVariant>,
        filter: Option<bool>,
    ) -> Result<Self, GpuError> {
        let summary = AdapterSummary::of(index, adapter);
        let filter = filter.unwrap_or(summary.is_software);
        let variant = match variant {
            Some(ShaderVariant::Native) if !summary.shader_int64 => {
                return Err(GpuError::Unsupported(format!(
                    "{} has no SHADER_INT64: use --shader emulated",
                    summary.name
                )))
            }
            Some(v) => v,
            None if summary.shader_int64 => ShaderVariant::Native,
            None => ShaderVariant::Emulated,
        };
        let mut features = wgpu::Features::empty();
        if variant == ShaderVariant::Native {
            features |= wgpu::Features::SHADER_INT64;
        }
        let timestamps = summary.timestamp_query;
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("vision-miner"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(e.to_string()))?;

        // The default handler panics; record errors and fail the batch instead.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        // (Its kind kept: out of memory is not a broken device.)
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let error = match e {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
                _ => GpuError::Validation(e.to_string()),
            };
            sink.lock().expect("error sink").push(error);
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        device.set_device_lost_callback(move |_reason, _message| lost_flag.store(true, Ordering::SeqCst));

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let table_probe = TableProbe::from_env();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("visionx"),
            source: wgpu::ShaderSource::Wgsl(shader::source(variant, table_probe).into()),
        });
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("visionx"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<KernelConfig>() as u64),
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, false),
                storage(3, false),
                storage(4, false),
                storage(5, false),
                storage(6, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("visionx"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Pipeline(err.to_string()));
        }
        let compact_tables = !summary.is_software;
        let gpu = GpuDevice {
            summary,
            variant,
            filter,
            compact_tables,
            table_probe,
            device,
            queue,
            modules: Arc::new(Mutex::new(HashMap::from([(
                ModuleKey { variant, probe: table_probe, unchecked: false },
                module,
            )]))),
            unchecked_kernel: std::env::var("VISION_GPU_CHECKS").is_ok_and(|v| v == "off"),
            one_buffer_per_segment: std::env::var("VISION_GPU_BUFFERS").is_ok_and(|v| v == "one-per-segment"),
            memory_ceiling_hashes: None,
            hang_timeout: HANG_TIMEOUT,
            pipeline_layout,
            pipelines: Arc::default(),
            layout,
            timestamps,
            lost,
            kept_alive: Arc::default(),
            errors,
        };
        // Compiles the kernel for consensus params now, so a shader the
        // driver refuses fails here, at open, and the usual pipeline is ready.
        let consensus = visionx::Params::CONSENSUS;
        gpu.pipeline(&gpu.kernel_spec(&consensus, gpu.tables(&consensus), gpu.filter_bits(&consensus))?)?;
        Ok(gpu)
    }

    /// The specialisation of the kernel for jobs of `params` on tables of
    /// `table` slots behind filters of `filter_bits` bits.
    pub(crate) fn kernel_spec(
        &self,
        params: &visionx::Params,
        table: TableSlots,
        filter_bits: u32,
    ) -> Result<KernelSpec, GpuError> {
        let geometry = params.validate().map_err(|e| GpuError::Unsupported(e.to_string()))?;
        Ok(KernelSpec {
            dmask: geometry.dmask as u32,
            smask: geometry.smask as u32,
            slots: table.slots,
            slots_pmask: table.pow2 - 1,
            slots_shift: table.pow2.trailing_zeros(),
            four_reads: params.four_reads(),
            write_every: params.write_every,
            mix_iters: params.mix_iters,
            filter_mask: filter_bits.saturating_sub(1),
        })
    }

    /// The kernel's pipeline for `spec`, compiled on first use.
    pub(crate) fn pipeline(&self, spec: &KernelSpec) -> Result<wgpu::ComputePipeline, GpuError> {
        let module_key = ModuleKey { variant: self.variant, probe: self.table_probe, unchecked: self.unchecked_kernel };
        let key = PipelineKey { module: module_key, spec: *spec, filter: self.filter };
        if let Some(pipeline) = self.pipelines.lock().expect("pipelines lock").get(&key) {
            return Ok(pipeline.clone());
        }
        let mut constants =
            vec![("WORKGROUP_SIZE", f64::from(WORKGROUP_SIZE)), ("USE_FILTER", if self.filter { 1.0 } else { 0.0 })];
        constants.extend(spec.constants());
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.module(module_key);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("visionx"),
            layout: Some(&self.pipeline_layout),
            module: &module,
            entry_point: Some("search"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Pipeline(err.to_string()));
        }
        self.pipelines.lock().expect("pipelines lock").insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The kernel for `key`'s variant and table probe, compiled on first use;
    /// unchecked: our own generated kernel compiled without wgpu's bounds
    /// checks, forced loop bounds and division checks (a few percent on
    /// real GPUs in the prototype; none beyond noise on the H200, docs/PERFORMANCE.md).
    fn module(&self, key: ModuleKey) -> wgpu::ShaderModule {
        let ModuleKey { variant, probe, unchecked } = key;
        let mut modules = self.modules.lock().expect("modules lock");
        modules
            .entry(key)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(if unchecked { "visionx unchecked" } else { "visionx" }),
                    source: wgpu::ShaderSource::Wgsl(shader::source(variant, probe).into()),
                };
                if !unchecked {
                    return self.device.create_shader_module(desc);
                }
                // SAFETY: the source is our kernel (`shaders/visionx.wgsl` and
                // its layers), no one else's, and it needs none of the checks:
                // - every buffer index is in bounds by construction: table
                //   slots are `lane * SLOTS + slot` with `slot < SLOTS` and
                //   `lane < count` (key groups `(lane * SLOTS + 8 * g) / 4`
                //   and one more, `g < SLOTS / 8`), the segment's hashes, which the buffers
                //   are sized for (likewise the filter and state words); the
                //   header reads stop at `header_words8 + 2 * header_words16`,
                //   within `HEADER_BUFFER_BYTES` (`set_job` refuses longer
                //   headers); found entries are written below `found_capacity`,
                //   the buffer's size;
                // - every loop ends: the `for` loops run to uniform bounds,
                //   and a probe loop ends at an empty slot, which every table
                //   has (`TableSlots` keeps the load at most 2/3, and
                //   `GpuSearcher::fits` refuses params whose writes need more;
                //   the keys and filters are cleared by each batch's first
                //   step, so no earlier batch's writes count); a probe's first
                //   slot is below SLOTS (tables past 2^16 slots are a power of
                //   two, where `first_slot` and `first_group` select the low
                //   bits, not the product that could wrap);
                // - the one division is by `max(WRITE_EVERY, 1u)`.
                // A wrong result is still caught: every found nonce is
                // re-checked on the CPU, and a mismatch disables the device.
                unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
            })
            .clone()
    }

    /// Destroys the device (every later use fails as after a driver reset).
    #[doc(hidden)]
    pub fn destroy(&self) {
        self.device.destroy();
    }

    pub(crate) fn check_health(&self) -> Result<(), GpuError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(GpuError::DeviceLost(self.summary.name.clone()));
        }
        // The worst of what was recorded: an out-of-memory error is
        // recoverable (a smaller batch), and must not hide a validation
        // error behind it, which disables the device.
        let errors: Vec<GpuError> = self.errors.lock().expect("error sink").drain(..).collect();
        let worst = errors.iter().position(|e| !matches!(e, GpuError::OutOfMemory(_))).unwrap_or(0);
        errors.into_iter().nth(worst).map_or(Ok(()), Err)
    }

    /// Waits (at most `timeout`) for `submission`, or for everything
    /// submitted. A device lost during the wait is an error, not a panic:
    /// wgpu panics on a poll error it has no `PollError` for (Vulkan's
    /// device lost, as a driver reset or an NVIDIA Xid brings).
    pub(crate) fn wait_for(
        &self,
        submission: Option<wgpu::SubmissionIndex>,
        timeout: std::time::Duration,
    ) -> Result<(), GpuError> {
        let name = &self.summary.name;
        let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.device.poll(wgpu::PollType::Wait { submission_index: submission, timeout: Some(timeout) })
        }));
        let lost = match poll {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(wgpu::PollError::Timeout)) => format!("{name}: a dispatch ran over {timeout:?} (hung)"),
            Ok(Err(other)) => format!("{name}: {other}"),
            Err(panic) => format!("{name}: {}", panic_message(panic.as_ref())),
        };
        // Hung or gone: nothing more is asked of it, and it is never dropped.
        self.lost.store(true, Ordering::SeqCst);
        Err(GpuError::DeviceLost(lost))
    }

    /// Table slots per hash for `params` on this device (see [`TableSlots`]).
    pub fn table_slots(&self, params: &visionx::Params) -> u32 {
        self.tables(params).slots
    }

    /// How this device sizes a hash's table: compact on hardware GPUs,
    /// where it lets more hashes in flight under the memory cliff; a full
    /// power of two on software adapters, whose SIMD lanes all pay for the
    /// longest probe sequence (lavapipe: 63 against 107 H/s).
    pub fn tables(&self, params: &visionx::Params) -> TableSlots {
        TableSlots::for_params(params, self.compact_tables)
    }

    /// Filter bits per hash for `params` (0 without the filter): `visionx`'s
    /// sizing, as the CPU engine's lanes use it.
    pub fn filter_bits(&self, params: &visionx::Params) -> u32 {
        if !self.filter {
            return 0;
        }
        let scratch_words = params.validate().map_or(1, |g| g.scratch_words);
        visionx::write_table::filter_bits(scratch_words) as u32
    }

    /// Bytes of device memory one hash in flight needs for `params`
    /// (table keys and values, filter, saved state).
    pub fn bytes_per_hash(&self, params: &visionx::Params) -> u64 {
        self.segment_widths(params).iter().sum()
    }

    /// The largest segment the device's limits allow for `params`: each
    /// binding within the binding limit and, with one buffer per segment,
    /// that buffer within the buffer limit. A multiple of the workgroup size
    /// unless fewer hashes fit; 0 when not even one does.
    pub fn max_segment_hashes(&self, params: &visionx::Params) -> u32 {
        // At most 2 GiB a binding on every backend: Metal reports its whole
        // buffer length, but the shader's bounds checks there hold sizes in
        // 32 bits, and lane offsets into a binding are 32-bit words.
        let per_binding =
            self.summary.max_storage_buffer_binding_size.min(self.summary.max_buffer_size).min(MAX_BINDING_BYTES);
        // Each of a segment's tables is one binding: the widest per hash
        // bounds it (the values, except that a small table's filter can be
        // bigger than its values).
        let widths = self.segment_widths(params);
        let widest = widths.iter().copied().max().unwrap_or(1).max(1);
        let mut hashes = per_binding / widest;
        if self.one_buffer_per_segment {
            // The ranges are aligned, so leave a little room per range.
            let slack = widths.len() as u64 * u64::from(self.storage_alignment());
            let whole = self.bytes_per_hash(params).max(1);
            hashes = hashes.min(self.summary.max_buffer_size.saturating_sub(slack) / whole);
        }
        let hashes = hashes.min(1 << 20);
        // Whole workgroups where one fits; tables so wide that a binding
        // holds fewer hashes (a legal job with many writes, a small binding
        // limit) run part-filled workgroups (the kernel skips lanes past a
        // segment's count). 0: not even one hash's table fits.
        let workgroup = u64::from(WORKGROUP_SIZE);
        (if hashes >= workgroup { hashes / workgroup * workgroup } else { hashes }) as u32
    }

    /// Bytes per hash of a segment's state, table keys, table values and
    /// filter, in the order `segment_buffers` lays them out.
    fn segment_widths(&self, params: &visionx::Params) -> [u64; 4] {
        let slots = u64::from(self.table_slots(params));
        [4 * 8, slots * 4, slots * 8, u64::from(self.filter_bits(params) / 8)]
    }

    /// Where storage bindings may start within a buffer: at least a
    /// 32-byte memory sector, so that each group of eight table keys the
    /// kernel probes lies in one.
    pub(crate) fn storage_alignment(&self) -> u32 {
        self.device.limits().min_storage_buffer_offset_alignment.max(KEY_GROUP_BYTES)
    }
}

/// Bytes of one group of table keys: eight slots, probed at once.
const KEY_GROUP_BYTES: u32 = 32;

/// How a hash's write table is sized and indexed by the kernel: `slots`
/// slots (a multiple of 8: the kernel probes groups of eight), a probe
/// starting at the group of slot `((j & (pow2 - 1)) * slots) >> log2(pow2)`.
/// Compact: 3/4 of `visionx`'s power-of-two sizing (at least twice the
/// distinct writes), so the load stays at most 2/3; the power of two itself
/// where the kernel's multiply could wrap (above 2^16), for tiny tables, and
/// when not compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSlots {
    pub slots: u32,
    /// The power of two `visionx` sizes the CPU engine's tables to.
    pub pow2: u32,
}

impl TableSlots {
    pub fn for_params(params: &visionx::Params, compact: bool) -> TableSlots {
        let scratch_words = params.validate().map_or(1, |g| g.scratch_words);
        let pow2 = visionx::write_table::table_slots(params, scratch_words).min(1 << 31) as u32;
        let compact = compact && (128..=1 << 16).contains(&pow2) && !pow2_tables_forced();
        TableSlots { slots: if compact { pow2 / 4 * 3 } else { pow2 }, pow2 }
    }
}

/// `VISION_GPU_TABLES=pow2`: full power-of-two tables (load at most 1/2,
/// shorter probes, 33% more memory a hash), for measuring the trade-off on
/// a card (docs/PERFORMANCE.md).
fn pow2_tables_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("VISION_GPU_TABLES").is_ok_and(|v| v == "pow2"))
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn consensus_tables_are_three_quarters_of_the_power_of_two() {
        assert_eq!(TableSlots::for_params(&visionx::Params::CONSENSUS, false).slots, 32_768);
        let t = TableSlots::for_params(&visionx::Params::CONSENSUS, true);
        assert_eq!((t.slots, t.pow2), (24_576, 32_768));
        let writes = visionx::Params::CONSENSUS.writes_per_hash();
        assert!(3 * writes <= 2 * u64::from(t.slots), "load above 2/3");
        // The kernel's start slot stays in range and cannot wrap in u32.
        let max_start = (u64::from(t.pow2) - 1) * u64::from(t.slots);
        assert!(max_start < 1 << 32 && (max_start >> t.pow2.trailing_zeros()) < u64::from(t.slots));
    }

    /// The kernel probes groups of eight slots: every table holds whole groups.
    #[test]
    fn every_table_is_whole_groups_of_eight() {
        for scratch_mb in [1, 2, 32, 128] {
            for (mix_iters, write_every) in [(1, 1), (1, 0), (777, 3), (4096, 1), (65_536, 4), (1_000_000, 1)] {
                let params = visionx::Params { scratch_mb, mix_iters, write_every, ..visionx::Params::CONSENSUS };
                for compact in [false, true] {
                    let t = TableSlots::for_params(&params, compact);
                    assert!(t.slots >= 8 && t.slots.is_multiple_of(8), "{params:?} compact {compact}: {t:?}");
                }
            }
        }
    }
}
