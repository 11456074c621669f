//! A searcher's device memory for one batch shape: the header, each
//! segment's bindings and found lists with their bind groups, and the
//! readback slots (configs, staging, timestamp queries).

use super::batch_timing::MAX_TIMED_STEPS;
use super::device::GpuDevice;
use super::kernel_layout::{KernelConfig, HEADER_BUFFER_BYTES, MAX_FOUND_PER_BATCH};
use super::searcher::BatchShape;
use super::segment_buffers::SegmentBuffers;
use super::GpuError;

/// Readback slots: one batch runs while the other is read back.
pub const SLOTS: usize = 2;

pub(super) struct Segment {
    pub(super) buffers: SegmentBuffers,
    /// The found list of this segment, one per readback slot. Every buffer a
    /// segment writes is its own, so the segments of a step run side by side
    /// (a shared found buffer made wgpu put a barrier between them).
    pub(super) found: Vec<wgpu::Buffer>,
    /// One bind group per readback slot.
    pub(super) bind_groups: Vec<wgpu::BindGroup>,
}

pub(super) struct ReadbackSlot {
    pub(super) config: wgpu::Buffer,
    /// Every segment's found list, one after another, then the timestamps.
    pub(super) staging: wgpu::Buffer,
    pub(super) queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    /// A batch was started here and not yet read or abandoned.
    pub(super) busy: bool,
}

/// What [`BatchBuffers::allocate`] made, handed whole to the searcher.
pub(super) struct BatchBuffers {
    pub(super) header: wgpu::Buffer,
    /// Found entries a segment's list holds.
    pub(super) found_capacity: u32,
    /// Bytes of a segment's found list.
    pub(super) found_bytes: u64,
    /// Bytes between two kernel configs (the uniform offset alignment).
    pub(super) config_stride: u64,
    pub(super) segments: Vec<Segment>,
    pub(super) readback: Vec<ReadbackSlot>,
}

impl BatchBuffers {
    /// Allocates `shape`'s buffers with tables of `slots_per_hash` slots and
    /// filters of `filter_bits_per_hash` bits for `params`, its configs
    /// sized for `shape.split` (the smallest split the searcher will use).
    pub(super) fn allocate(
        gpu: &GpuDevice,
        shape: BatchShape,
        params: &visionx::Params,
        slots_per_hash: u32,
        filter_bits_per_hash: u32,
    ) -> Result<BatchBuffers, GpuError> {
        let device = &gpu.device;
        // Two scopes: a buffer the device has no memory for makes the bind
        // groups built on it invalid too; those validation errors follow
        // from the out-of-memory one and must not reach the device's error
        // sink, where they would read as a broken device.
        let out_of_memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let buffer = |label: &str, size: u64, usage| {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        };
        let header = buffer("header", HEADER_BUFFER_BYTES, storage);
        // Per segment.
        let found_capacity = shape.segment_hashes.min(MAX_FOUND_PER_BATCH);
        // The count, the finished lanes, then nine words an entry.
        let found_bytes = 8 + u64::from(found_capacity) * 9 * 4;
        let align = u64::from(device.limits().min_uniform_buffer_offset_alignment);
        let config_stride = (std::mem::size_of::<KernelConfig>() as u64).div_ceil(align) * align;
        let splits = u64::from(params.mix_iters.div_ceil(shape.split).max(1));
        // Two per step, as many as a batch of the allocated split (the
        // smallest, so the most steps) may time.
        let timestamps = 2 * splits.min(u64::from(MAX_TIMED_STEPS));
        let readback: Vec<ReadbackSlot> = (0..SLOTS)
            .map(|_| ReadbackSlot {
                config: buffer(
                    "config",
                    config_stride * splits * u64::from(shape.segments),
                    wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                ),
                staging: buffer(
                    "found staging",
                    found_bytes * u64::from(shape.segments) + timestamps * 8,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
                queries: gpu.timestamps.then(|| {
                    let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("batch timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count: timestamps as u32,
                    });
                    let resolve = buffer(
                        "timestamps",
                        timestamps * 8,
                        wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    );
                    (set, resolve)
                }),
                busy: false,
            })
            .collect();
        let segments = (0..shape.segments)
            .map(|_| {
                let buffers = SegmentBuffers::allocate(gpu, shape.segment_hashes, slots_per_hash, filter_bits_per_hash);
                let found: Vec<wgpu::Buffer> =
                    (0..SLOTS).map(|_| buffer("found", found_bytes, storage | wgpu::BufferUsages::COPY_SRC)).collect();
                let bind_groups = readback
                    .iter()
                    .zip(&found)
                    .map(|(slot, found)| {
                        device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("visionx segment"),
                            layout: &gpu.layout,
                            entries: &[
                                wgpu::BindGroupEntry {
                                    binding: 0,
                                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                        buffer: &slot.config,
                                        offset: 0,
                                        size: wgpu::BufferSize::new(std::mem::size_of::<KernelConfig>() as u64),
                                    }),
                                },
                                wgpu::BindGroupEntry { binding: 1, resource: header.as_entire_binding() },
                                wgpu::BindGroupEntry { binding: 2, resource: buffers.state.binding() },
                                wgpu::BindGroupEntry { binding: 3, resource: buffers.keys.binding() },
                                wgpu::BindGroupEntry { binding: 4, resource: buffers.values.binding() },
                                wgpu::BindGroupEntry { binding: 5, resource: found.as_entire_binding() },
                                wgpu::BindGroupEntry { binding: 6, resource: buffers.filter.binding() },
                            ],
                        })
                    })
                    .collect();
                Segment { buffers, found, bind_groups }
            })
            .collect();
        let invalid = pollster::block_on(invalid.pop());
        if let Some(err) = pollster::block_on(out_of_memory.pop()) {
            return Err(GpuError::OutOfMemory(err.to_string()));
        }
        if let Some(err) = invalid {
            return Err(GpuError::Validation(err.to_string()));
        }
        Ok(BatchBuffers { header, found_capacity, found_bytes, config_stride, segments, readback })
    }
}
