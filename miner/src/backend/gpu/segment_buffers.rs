//! A segment's device memory: the saved state, table keys, table values and
//! filter of its hashes, each bound to the kernel as one storage binding.
//!
//! Two layouts, chosen per device ([`GpuDevice::one_buffer_per_segment`]):
//! a buffer per binding (the default), or one buffer per segment with each
//! binding an aligned range of it (a quarter of the table and state
//! allocations; the found lists stay apart), to measure
//! whether the Vulkan driver's slowdown past ~36 GiB follows their number).
//! Segments never share a buffer either way: wgpu tracks use per buffer,
//! not per range, so two segments writing one buffer would get a barrier
//! between their dispatches and run one after another.

use super::device::GpuDevice;

/// A range of a buffer, bound as one storage binding.
pub(crate) struct BufferRange {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

impl BufferRange {
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.size),
        })
    }

    /// Zeroes the range (at a batch's first step).
    pub(crate) fn clear(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.clear_buffer(&self.buffer, self.offset, Some(self.size));
    }
}

/// The bindings of one segment.
pub(crate) struct SegmentBuffers {
    pub(crate) state: BufferRange,
    pub(crate) keys: BufferRange,
    pub(crate) values: BufferRange,
    /// Never read without the filter, but the binding needs a buffer.
    pub(crate) filter: BufferRange,
}

impl SegmentBuffers {
    /// Allocates a segment of `hashes` hashes with `slots` table slots and
    /// `filter_bits` filter bits each. Out-of-memory errors surface through
    /// the caller's error scope.
    pub(crate) fn allocate(gpu: &GpuDevice, hashes: u32, slots: u32, filter_bits: u32) -> SegmentBuffers {
        let n = u64::from(hashes);
        let word = 8u64;
        // Sizes stay multiples of 4 (clear_buffer's alignment): slots and
        // filter bits are whole words.
        let sizes = [
            n * 4 * word,
            n * u64::from(slots) * 4,
            n * u64::from(slots) * word,
            (n * u64::from(filter_bits) / 8).max(16),
        ];
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let labels = ["state", "table keys", "table values", "table filter"];
        let ranges: [BufferRange; 4] = if gpu.one_buffer_per_segment {
            let align = u64::from(gpu.storage_alignment());
            let mut offsets = [0u64; 4];
            let mut end = 0u64;
            for (offset, size) in offsets.iter_mut().zip(sizes) {
                *offset = end.div_ceil(align) * align;
                end = *offset + size;
            }
            let buffer = create(gpu, "segment", end, storage);
            std::array::from_fn(|i| BufferRange { buffer: buffer.clone(), offset: offsets[i], size: sizes[i] })
        } else {
            std::array::from_fn(|i| BufferRange {
                buffer: create(gpu, labels[i], sizes[i], storage),
                offset: 0,
                size: sizes[i],
            })
        };
        let [state, keys, values, filter] = ranges;
        SegmentBuffers { state, keys, values, filter }
    }
}

fn create(gpu: &GpuDevice, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
}
