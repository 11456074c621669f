//! The GPU backend on a real adapter (in CI: Mesa lavapipe, a Vulkan
//! software adapter). Without an adapter these tests fail under `CI=true`
//! and are skipped, with a message, elsewhere.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vision_miner::backend::gpu::tuning::TuningGoals;
use vision_miner::backend::gpu::{self, GpuBackend, GpuDevice, InjectedFault, ShaderVariant, TableProbe};
use visionx::{vectors, FastEngine, Job, NonceRange, Params, PowEngine, PowInput, SearchControl, Target};

fn require_adapter() -> bool {
    if !gpu::adapters::enumerate().is_empty() {
        return true;
    }
    // (As every guard of the suite: CI set at all, to anything, is CI.)
    if std::env::var_os("CI").is_some() {
        panic!("CI needs a GPU adapter: install mesa-vulkan-drivers (lavapipe)");
    }
    eprintln!("skipping: no GPU adapter; install mesa-vulkan-drivers");
    false
}

fn device(variant: ShaderVariant) -> GpuDevice {
    gpu::open_device(None, Some(variant)).expect("open the first adapter")
}

fn small_params() -> Params {
    Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 3000, reads_per_iter: 4, write_every: 3, epoch_blocks: 32 }
}

fn job(params: Params, nonces: NonceRange, difficulty: u64) -> Job {
    let input = PowInput::new([0x5a; 32], 7, b"gpu test header, 37 bytes long......".to_vec(), params).unwrap();
    Job { input: Arc::new(input), target: Target::from_difficulty(difficulty), nonces }
}

/// Goals under which the tuner grows as far as `budget` lets it: steps far
/// below `min_step` and a gain floor far below zero take every larger
/// batch that runs, so the outcome is the memory, not lavapipe's timing.
fn growing_to_the_budget(budget: u64) -> TuningGoals {
    TuningGoals {
        memory_budget: Some(budget),
        min_step: Duration::from_secs(60),
        max_step: Duration::from_secs(120),
        min_gain: -1e9,
        fixed_hashes: None,
        whole_batches: false,
    }
}

/// A small fixed batch keeps tests quick on a software adapter.
fn goals(batch: u32) -> TuningGoals {
    TuningGoals { fixed_hashes: Some(batch), ..Default::default() }
}

fn collect(
    backend: &GpuBackend,
    job: &Job,
    control: &Arc<SearchControl>,
) -> (Result<visionx::SearchEnd, gpu::GpuError>, Vec<visionx::Found>) {
    let found = Mutex::new(Vec::new());
    let end = backend.search(job, control, &|f| found.lock().unwrap().push(f));
    let mut found = found.into_inner().unwrap();
    found.sort_by_key(|f| f.nonce);
    (end, found)
}

#[test]
fn every_hash_vector_on_both_shader_variants() {
    if !require_adapter() {
        return;
    }
    // Both table layouts too: compact (hardware GPUs) and power-of-two
    // (software adapters, this one's default); the kernel compiled with and
    // without wgpu's runtime checks; a buffer per binding and one buffer per
    // segment (its bindings at offsets); with the write filter (software
    // adapters) and without (hardware GPUs: every read probes the table);
    // tables probed slot by slot and by groups of eight.
    #[derive(Debug, Clone, Copy)]
    struct Setup {
        compact: bool,
        unchecked: bool,
        one_buffer: bool,
        filter: bool,
        probe: TableProbe,
    }
    let lavapipe =
        Setup { compact: false, unchecked: false, one_buffer: false, filter: true, probe: TableProbe::Slots };
    let hardware = Setup { compact: true, filter: false, ..lavapipe };
    let mut setups = Vec::new();
    for probe in [TableProbe::Slots, TableProbe::Groups] {
        setups.extend([
            Setup { probe, ..lavapipe },
            Setup { probe, ..hardware },
            Setup { probe, unchecked: true, ..hardware },
            Setup { probe, one_buffer: true, ..hardware },
        ]);
    }
    setups.extend([
        Setup { compact: true, ..lavapipe },
        Setup { unchecked: true, ..lavapipe },
        Setup { compact: false, ..hardware },
    ]);
    for variant in [ShaderVariant::Native, ShaderVariant::Emulated] {
        // One device a variant, cloned (its pipelines are shared): a device
        // opened for each case took over 30 s on an H200.
        let opened = device(variant);
        for setup in &setups {
            for v in vectors::hash_vectors() {
                let input = v.input().unwrap();
                let mut gpu = opened.clone();
                gpu.compact_tables = setup.compact;
                gpu.unchecked_kernel = setup.unchecked;
                gpu.one_buffer_per_segment = setup.one_buffer;
                gpu.filter = setup.filter;
                gpu.table_probe = setup.probe;
                let digests = gpu::hash_nonces(gpu, &input, &[v.nonce]).unwrap();
                assert_eq!(digests[0], v.expected(), "{variant}, {setup:?}: {:?} nonce {}", v.params, v.nonce);
            }
        }
    }
}

/// Every lane of a segment (each table at its own offset) hashes as the CPU
/// does, with the tables probed either way, compact or not, with the write
/// filter or without: the vectors run one lane a batch.
#[test]
fn every_lane_hashes_as_the_cpu_does_with_either_table_probe() {
    if !require_adapter() {
        return;
    }
    let params =
        Params { dataset_mb: 1, scratch_mb: 1, mix_iters: 1500, reads_per_iter: 4, write_every: 2, epoch_blocks: 32 };
    let input = job(params, NonceRange::new(0, 1), 1).input;
    let first = 1_u64 << 40;
    let count = 300;
    let mut cpu = FastEngine::new();
    let expected: Vec<_> = (first..first + u64::from(count)).map(|n| cpu.hash(&input, n)).collect();
    let opened = device(ShaderVariant::Native);
    for probe in [TableProbe::Slots, TableProbe::Groups] {
        for (compact, filter) in [(true, false), (false, false), (false, true)] {
            let mut gpu = opened.clone();
            gpu.table_probe = probe;
            gpu.compact_tables = compact;
            gpu.filter = filter;
            let digests = gpu::hash_range(gpu, &input, first, count).unwrap();
            assert!(digests == expected, "{probe:?}, compact {compact}, filter {filter}");
        }
    }
}

#[test]
fn gpu_finds_exactly_the_nonces_the_cpu_finds() {
    if !require_adapter() {
        return;
    }
    // Pseudo-random ranges (fixed seed, so a failure reproduces), both
    // variants, an easy target, batches smaller than the ranges so several
    // batches and both readback slots are used.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for variant in [ShaderVariant::Native, ShaderVariant::Emulated] {
        let backend = GpuBackend::start(
            0,
            Some(variant),
            None,
            goals(128),
            &job(small_params(), NonceRange::new(0, 1), 1),
            InjectedFault::None,
        )
        .unwrap();
        for _ in 0..2 {
            let start = next() % (u64::MAX - 1000);
            let nonces = NonceRange::new(start, start + 300 + next() % 200);
            let job = job(small_params(), nonces, 8);
            let (end, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
            assert_eq!(end.unwrap(), visionx::SearchEnd::completed(nonces, nonces.len()));
            let mut expected = Vec::new();
            FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
            assert!(!expected.is_empty());
            assert_eq!(found, expected, "{variant}, nonces {nonces:?}");
        }
    }
}

/// A search cancelled at its first find (while later batches run) and
/// picked up at its `next_nonce` finds what the CPU finds, each once:
/// batches are read in order, so what is below the point is done.
#[test]
fn a_search_picked_up_at_its_next_nonce_finds_each_share_once() {
    if !require_adapter() {
        return;
    }
    // The cancel comes from the finds' re-check on the CPU: a card that
    // finishes the whole range first (a fast one, a slow CPU) is given a
    // longer range, with finds as sparse, until a cancel comes part-way.
    for (batches, difficulty) in [(12, 8), (200, 128), (1_000, 1_024)] {
        let nonces = NonceRange::new(5_000, 5_000 + batches * 128 + 37);
        let job = job(small_params(), nonces, difficulty);
        let backend = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::None).unwrap();
        let mut found = Vec::new();
        let (mut from, mut parts) = (nonces.start, 0);
        while from < nonces.end {
            parts += 1;
            assert!(parts <= batches + 1, "no progress at {from}");
            let control = Arc::new(SearchControl::new());
            let part = Mutex::new(Vec::new());
            let end = backend
                .search(&job.with_nonces(NonceRange::new(from, nonces.end)), &control, &|f| {
                    part.lock().unwrap().push(f);
                    control.cancel();
                })
                .unwrap();
            assert_eq!(end.next_nonce, from + end.hashes, "batches read in order: {end:?}");
            assert!(!end.cancelled || end.hashes.is_multiple_of(128), "whole batches: {end:?}");
            found.extend(part.into_inner().unwrap());
            from = end.next_nonce;
            if !end.cancelled {
                assert_eq!(from, nonces.end);
            }
        }
        found.sort_by_key(|f| f.nonce);
        let mut expected = Vec::new();
        FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
        assert!(expected.len() >= 3, "finds in several batches: {expected:?}");
        assert_eq!(found, expected, "each share once");
        if parts >= 2 {
            return;
        }
        eprintln!("{batches} batches done before the first find's cancel: a longer range");
    }
    panic!("no search was cancelled along the way");
}

/// Tiny tables: a segment holds more hashes than a found list does.
fn tiny_params() -> Params {
    Params { mix_iters: 16, ..small_params() }
}

#[test]
fn finds_past_a_found_list_are_counted_and_dropped() {
    if !require_adapter() {
        return;
    }
    // Every hash meets difficulty 1: one segment of a workgroup more than
    // its found list holds. (Without the write filter, which is wider than
    // tiny tables and would bound the segment below that.)
    let hashes = gpu::MAX_FOUND_PER_BATCH + gpu::WORKGROUP_SIZE;
    let shape = gpu::BatchShape { segment_hashes: hashes, segments: 1, split: gpu::DEFAULT_SPLIT };
    let mut gpu = device(ShaderVariant::Native);
    gpu.filter = false;
    let mut searcher = gpu::GpuSearcher::new(gpu, shape, &tiny_params()).unwrap();
    let nonces = NonceRange::new(0, u64::from(hashes));
    let job = job(tiny_params(), nonces, 1);
    searcher.set_job(job.input.clone(), job.target).unwrap();
    let result = searcher.run_batch(0, hashes).unwrap();
    assert_eq!(result.found.len() as u32, gpu::MAX_FOUND_PER_BATCH);
    assert_eq!(result.finds_not_stored, gpu::WORKGROUP_SIZE);

    // A backend passes on or counts every one: the status's `dropped`.
    let backend = GpuBackend::start(0, None, Some(false), goals(hashes), &job, InjectedFault::None).unwrap();
    assert_eq!(backend.shape().segments, 1, "{:?}", backend.shape());
    let (end, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    assert_eq!(end.unwrap().hashes, u64::from(hashes));
    let dropped = backend.finds_dropped();
    assert!(dropped >= u64::from(gpu::WORKGROUP_SIZE), "{dropped}");
    assert_eq!(found.len() as u64 + dropped, u64::from(hashes), "each find passed on or counted");
    let mut expected = Vec::new();
    FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
    assert!(found.iter().all(|f| expected.contains(f)), "only re-checked finds passed on");

    // Mining, the device's drops are the status's (as they happen: here
    // with those of the search above).
    use vision_miner::client::work_dispatch::{found_channel, Device, Work, WorkDispatch};
    let (found, found_rx) = found_channel();
    let dropped_before = backend.finds_dropped();
    let dispatch = WorkDispatch::start(vec![Box::new(backend) as Device], found);
    dispatch.set_work(Some(Arc::new(Work {
        id: "every hash".into(),
        height: 1,
        input: job.input.clone(),
        target: job.target,
        share_difficulty: 1,
        network_difficulty: u64::MAX,
        nonces: job.nonces,
        pool: None,
        received: Instant::now(),
    })));
    let deadline = Instant::now() + Duration::from_secs(60);
    let dropped = || dispatch.found_dropped() - dropped_before;
    while found_rx.len() as u64 + dropped() != u64::from(hashes) {
        assert!(Instant::now() < deadline, "{} sent, {} dropped of {hashes}", found_rx.len(), dropped());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(dropped() >= u64::from(gpu::WORKGROUP_SIZE));
    dispatch.stop();
}

#[test]
fn a_batch_over_several_segments_finds_what_the_cpu_finds() {
    if !require_adapter() {
        return;
    }
    // Three segments in one compute pass, each with its own found list; the
    // last one only partly used. With one buffer per segment too, where
    // every binding but the first is at an offset in it.
    let shape = gpu::BatchShape { segment_hashes: 128, segments: 3, split: gpu::DEFAULT_SPLIT };
    for (variant, one_buffer) in [
        (ShaderVariant::Native, false),
        (ShaderVariant::Emulated, false),
        (ShaderVariant::Native, true),
        (ShaderVariant::Emulated, true),
    ] {
        let mut gpu = device(variant);
        gpu.one_buffer_per_segment = one_buffer;
        let mut searcher = gpu::GpuSearcher::new(gpu, shape, &small_params()).unwrap();
        let nonces = NonceRange::new(1_000, 1_000 + 300);
        let job = job(small_params(), nonces, 8);
        searcher.set_job(job.input.clone(), job.target).unwrap();
        let result = searcher.run_batch(nonces.start, 300).unwrap();
        let mut found = result.found;
        found.sort_by_key(|f| f.nonce);
        let mut expected = Vec::new();
        FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
        assert!(expected.iter().any(|f| f.nonce >= 1_000 + 256), "the third segment has finds to check");
        assert_eq!(found, expected, "{variant}, one buffer {one_buffer}");
        assert_eq!(result.finds_not_stored, 0);
        // Where the adapter has timestamps (lavapipe has), each of the
        // three steps is timed.
        let summary = &searcher.device().summary;
        if !summary.timestamp_query {
            assert!(!summary.is_software, "lavapipe has timestamps: {summary:?}");
            continue;
        }
        let gpu_time = result.gpu_time.expect("timestamps on an adapter that has them");
        let steps = result.step_times.expect("steps timed");
        assert!(steps.busy <= gpu_time && !steps.busy.is_zero(), "{steps:?} of {gpu_time:?}");
        assert!(!steps.first.is_zero() && !steps.last.is_zero() && steps.first + steps.last <= steps.busy);
    }
}

#[test]
fn a_batch_of_more_steps_than_timestamps_is_timed_as_a_whole() {
    if !require_adapter() {
        return;
    }
    // One iteration a step: more steps than a query set can time one by
    // one. The batch is timed first step to last, and still correct.
    let params = Params { mix_iters: gpu::searcher::MAX_TIMED_STEPS + 1, ..small_params() };
    let shape = gpu::BatchShape { segment_hashes: 128, segments: 1, split: 1 };
    let mut searcher = gpu::GpuSearcher::new(device(ShaderVariant::Native), shape, &params).unwrap();
    let nonces = NonceRange::new(40, 40 + 128);
    let job = job(params, nonces, 4);
    searcher.set_job(job.input.clone(), job.target).unwrap();
    let result = searcher.run_batch(nonces.start, 128).unwrap();
    assert_eq!(result.dispatches, params.mix_iters);
    assert!(result.gpu_time.is_some_and(|t| !t.is_zero()));
    assert_eq!(result.step_times, None);
    let mut found = result.found;
    found.sort_by_key(|f| f.nonce);
    let mut expected = Vec::new();
    FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
    assert!(!expected.is_empty());
    assert_eq!(found, expected);
    // Grown to two iterations a step, the same buffers time every step.
    assert!(searcher.set_split(2));
    let result = searcher.run_batch(nonces.start, 128).unwrap();
    assert_eq!(result.dispatches, params.mix_iters.div_ceil(2));
    let steps = result.step_times.expect("every step timed");
    assert!(steps.busy <= result.gpu_time.unwrap() && !steps.first.is_zero());
    let mut found = result.found;
    found.sort_by_key(|f| f.nonce);
    assert_eq!(found, expected);
}

#[test]
fn a_tuned_device_finds_what_the_cpu_finds() {
    if !require_adapter() {
        return;
    }
    // Tuned, not fixed: on a hardware GPU the tuner also grows the split
    // (longer slices of the mix loop); the results must not change.
    let goals = TuningGoals { memory_budget: Some(1 << 30), ..Default::default() };
    let tuning_job = job(small_params(), NonceRange::new(0, 1), 1);
    let backend = GpuBackend::start(0, None, None, goals, &tuning_job, InjectedFault::None).unwrap();
    eprintln!("tuned shape {:?}", backend.shape());
    let nonces = NonceRange::new(77_000, 77_000 + 700);
    let job = job(small_params(), nonces, 8);
    let (end, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    assert_eq!(end.unwrap(), visionx::SearchEnd::completed(nonces, nonces.len()));
    let mut expected = Vec::new();
    FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
    assert!(!expected.is_empty());
    assert_eq!(found, expected);
}

/// A card with less memory than the budget: a batch that fails to allocate
/// is bisected against the largest that fitted, so the tuner ends on the
/// largest that fits rather than the last doubling below it (512 here).
#[test]
fn tuning_fills_a_card_smaller_than_the_budget() {
    if !require_adapter() {
        return;
    }
    let goals = growing_to_the_budget(1 << 30);
    let tuning_job = job(small_params(), NonceRange::new(0, 1), 1);
    // 128, 256, 512, 1024 (fails), 768, 896, and nothing whole between 896 and 1024.
    let backend = GpuBackend::start(0, None, None, goals, &tuning_job, InjectedFault::OutOfMemoryAbove(1000)).unwrap();
    assert_eq!(backend.shape().hashes(), 896, "{:?}", backend.shape());
    mines_what_the_cpu_finds(&backend, &job(small_params(), NonceRange::new(31_000, 31_000 + 1_000), 8));
}

/// Candidates rated by whole batches (`VISION_GPU_TUNE=batches`): the
/// tuner still settles on a shape within the budget, rates it by a batch,
/// and the device mines right with it.
#[test]
fn tuning_by_whole_batches_mines_what_the_cpu_finds() {
    if !require_adapter() {
        return;
    }
    let goals = TuningGoals { memory_budget: Some(1 << 30), whole_batches: true, ..Default::default() };
    let tuning_job = job(small_params(), NonceRange::new(0, 1), 1);
    let backend = GpuBackend::start(0, None, None, goals, &tuning_job, InjectedFault::None).unwrap();
    let tuned = backend.tuned();
    // Rated by the batch it timed: every slice (three here), so longer
    // than the one slice timed for the step window.
    let batch = tuned.batch_time.unwrap_or_else(|| panic!("no batch timed: {tuned:?}"));
    assert!(batch > tuned.step_time, "{tuned:?}");
    let rate = f64::from(tuned.shape.hashes()) / batch.as_secs_f64();
    assert!((tuned.measured_rate - rate).abs() <= rate * 1e-9, "{tuned:?}: {rate}");
    mines_what_the_cpu_finds(&backend, &job(small_params(), NonceRange::new(61_000, 61_000 + 700), 8));
}

/// `backend` searches all of `job` and finds what the CPU engine finds
/// (something: the job's difficulty must be low enough).
fn mines_what_the_cpu_finds(backend: &GpuBackend, job: &Job) {
    let (end, found) = collect(backend, job, &Arc::new(SearchControl::new()));
    assert_eq!(end.unwrap().hashes, job.nonces.len());
    let mut expected = Vec::new();
    FastEngine::new().search(job, &SearchControl::new(), &mut |f| expected.push(f));
    assert!(!expected.is_empty());
    assert_eq!(found, expected);
}

/// Segments are equal and whole workgroups, and a batch at the memory
/// budget stays within it (rounding each segment up once overshot it by up
/// to a workgroup a segment).
#[test]
fn a_shape_at_the_budget_stays_within_it() {
    if !require_adapter() {
        return;
    }
    let gpu = device(ShaderVariant::Emulated);
    let params = Params::CONSENSUS;
    let segment = gpu.max_segment_hashes(&params);
    let shape = |hashes, cap| gpu::tuning::shape_for(&gpu, &params, hashes, 1024, cap);
    for cap in [segment * 3 + 128, segment * 14 + 3_968, 116_864, 98_048] {
        let at_cap = shape(cap, cap);
        assert!(at_cap.hashes() <= cap, "{at_cap:?} over {cap}");
        assert!(at_cap.hashes() + at_cap.segments * gpu::WORKGROUP_SIZE > cap, "{at_cap:?} far below {cap}");
        assert!(at_cap.segment_hashes <= segment && at_cap.segment_hashes % gpu::WORKGROUP_SIZE == 0);
    }
    // Below the budget a batch is rounded up to whole workgroups.
    assert_eq!(shape(100, 116_864).hashes(), gpu::WORKGROUP_SIZE);
    assert_eq!(shape(segment + 1, 116_864).hashes(), 2 * (segment / 2 + 1).div_ceil(128) * 128);
}

/// Growth that reaches a budget holding no whole number of equal segments
/// tunes to the shape at the budget (its segments rounded down to whole
/// workgroups), measuring no more hashes than that shape holds: measuring
/// the budget's hashes on the smaller shape once panicked.
#[test]
fn tuning_to_a_budget_between_whole_segments() {
    if !require_adapter() {
        return;
    }
    // A big filter (sized by the scratchpad) and few iterations: segments of
    // a few hundred hashes that lavapipe runs quickly.
    let params =
        Params { dataset_mb: 1, scratch_mb: 16, mix_iters: 64, reads_per_iter: 4, write_every: 4, epoch_blocks: 32 };
    let gpu = device(ShaderVariant::Native);
    let segment = gpu.max_segment_hashes(&params);
    assert!(segment >= 256, "the case needs segments of 256 hashes or more: {segment}");
    // Between one and two segments, and an odd number of workgroups: two
    // equal segments of whole workgroups cannot hold it.
    let cap = if segment.is_multiple_of(256) { segment + 128 } else { segment + 256 };
    assert_eq!((gpu::WORKGROUP_SIZE, cap % 256), (128, 128));
    let goals = growing_to_the_budget(u64::from(cap) * gpu.bytes_per_hash(&params));
    drop(gpu);
    let tuning_job = job(params, NonceRange::new(0, 1), 1);
    let backend = GpuBackend::start(0, None, None, goals, &tuning_job, InjectedFault::None).unwrap();
    let shape = backend.shape();
    assert!(shape.hashes() <= cap, "{shape:?} for a budget of {cap}");
    // About 500 finds whatever the segment: a card with 2 GiB bindings has
    // segments of a million hashes here, and at 1 in 8 their finds overflow
    // the found list (16,384 a segment), as the backend warns they would.
    let difficulty = (u64::from(cap) / 500).max(8);
    mines_what_the_cpu_finds(&backend, &job(params, NonceRange::new(8_000, 8_000 + u64::from(cap)), difficulty));
}

/// A step window no batch can meet (1 µs) once panicked the tuner; now
/// it settles for the smallest batch at split 1, which still mines right.
#[test]
fn a_window_no_batch_meets_still_tunes_to_the_smallest_batch() {
    if !require_adapter() {
        return;
    }
    let goals = TuningGoals {
        memory_budget: Some(1 << 30),
        min_step: Duration::from_nanos(1),
        max_step: Duration::from_micros(1),
        ..Default::default()
    };
    let tuning_job = job(small_params(), NonceRange::new(0, 1), 1);
    let backend = GpuBackend::start(0, None, None, goals, &tuning_job, InjectedFault::None).unwrap();
    assert_eq!(backend.shape().split, 1, "{:?}", backend.shape());
    let nonces = NonceRange::new(5_000, 5_000 + 300);
    let job = job(small_params(), nonces, 8);
    let (end, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    assert_eq!(end.unwrap().hashes, nonces.len());
    let mut expected = Vec::new();
    FastEngine::new().search(&job, &SearchControl::new(), &mut |f| expected.push(f));
    assert_eq!(found, expected);
}

#[test]
fn a_segment_fits_every_binding_even_where_the_filter_outweighs_the_table() {
    if !require_adapter() {
        return;
    }
    // Software adapters keep the filter; hardware GPUs do not by default,
    // and the sizing under test is the filtered one on every adapter.
    let mut filtered = device(ShaderVariant::Emulated);
    filtered.filter = true;
    let limit = filtered.summary.max_storage_buffer_binding_size.min(filtered.summary.max_buffer_size);
    // Tiny tables (a few writes a hash) behind a filter sized by the scratchpad.
    let params =
        Params { dataset_mb: 1, scratch_mb: 4, mix_iters: 16, reads_per_iter: 4, write_every: 8, epoch_blocks: 32 };
    let (slots, filter_bytes) =
        (u64::from(filtered.table_slots(&params)), u64::from(filtered.filter_bits(&params) / 8));
    assert!(filter_bytes > slots * 8, "the case under test: {filter_bytes} filter bytes, {slots} slots");
    let hashes = u64::from(filtered.max_segment_hashes(&params));
    assert!(hashes * filter_bytes <= limit, "{hashes} hashes x {filter_bytes} filter bytes over {limit}");
    assert!(hashes * slots * 8 <= limit);
}

#[test]
fn one_buffer_per_segment_stays_within_the_buffer_limit() {
    if !require_adapter() {
        return;
    }
    // A segment's four bindings in one buffer: the buffer limit, not only
    // the binding limit, bounds the segment. Lower the limit the sizing
    // reads below what four full bindings take, so that it is the bound.
    let params = Params::CONSENSUS;
    let mut gpu = device(ShaderVariant::Emulated);
    let per_binding = gpu.max_segment_hashes(&params);
    gpu.one_buffer_per_segment = true;
    let per_hash = gpu.bytes_per_hash(&params);
    gpu.summary.max_buffer_size = u64::from(per_binding) * per_hash / 2;
    let hashes = gpu.max_segment_hashes(&params);
    assert!(hashes < per_binding, "{hashes} hashes: the buffer limit binds");
    assert!(u64::from(hashes) * per_hash <= gpu.summary.max_buffer_size);
    assert!(hashes >= per_binding / 2 - 2 * gpu::WORKGROUP_SIZE, "{hashes} of {per_binding}: not needlessly small");
    // And a searcher of that segment allocates.
    let shape = gpu::BatchShape { segment_hashes: hashes, segments: 2, split: gpu::DEFAULT_SPLIT };
    gpu::GpuSearcher::new(gpu.clone(), shape, &params).unwrap();
    // A shape of over 2^32 hashes is refused before anything is allocated.
    let huge = gpu::BatchShape { segment_hashes: 4096, segments: 1 << 20, split: gpu::DEFAULT_SPLIT };
    match gpu::GpuSearcher::new(gpu, huge, &params) {
        Err(gpu::GpuError::Unsupported(why)) => assert!(why.contains("2^32"), "{why}"),
        other => panic!("{:?}", other.map(|s| s.shape())),
    }
}

#[test]
fn a_wrong_gpu_result_disables_the_device() {
    if !require_adapter() {
        return;
    }
    let job = job(small_params(), NonceRange::new(0, 256), 2);
    let backend = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::CorruptDigests).unwrap();
    let (end, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    assert!(matches!(end, Err(gpu::GpuError::WrongResult { .. })), "{end:?}");
    assert!(found.is_empty(), "no unchecked result may escape: {found:?}");
    assert!(backend.is_disabled());
    // Later searches fail fast instead of hashing on a broken device.
    let (again, _) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    assert!(again.is_err());
}

/// Out of memory part-way through a search (at the edge of the card's
/// memory) sits that search out; the next search runs, on the slots the
/// failed one had taken.
#[test]
fn a_search_that_ran_out_of_memory_part_way_leaves_the_device_usable() {
    if !require_adapter() {
        return;
    }
    let job = job(small_params(), NonceRange::new(0, 512), 2);
    let backend = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::OutOfMemoryMidSearch).unwrap();
    let (end, _) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    assert!(matches!(end, Err(gpu::GpuError::OutOfMemory(_))), "{end:?}");
    assert!(!backend.is_disabled(), "out of memory sits a search out, not the device");
    let (again, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    let again = again.expect("the next search runs");
    assert_eq!((again.hashes, again.cancelled), (512, false));
    let (clean, expected) = {
        let clean = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::None).unwrap();
        collect(&clean, &job, &Arc::new(SearchControl::new()))
    };
    assert_eq!(clean.unwrap().hashes, 512);
    assert_eq!(found, expected, "the same shares as a device that never failed");
}

/// A search that ran out of memory after some batches were read back sits
/// out, and when its work comes back the device picks up after those
/// batches: no hash is done twice, no share found twice.
#[test]
fn out_of_memory_part_way_keeps_the_batches_done() {
    use std::sync::atomic::Ordering::Relaxed;
    use vision_miner::client::work_dispatch::{found_channel, Device, Work, WorkDispatch};
    if !require_adapter() {
        return;
    }
    let job = job(small_params(), NonceRange::new(0, 512), 16);
    let expected = {
        let clean = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::None).unwrap();
        let (end, found) = collect(&clean, &job, &Arc::new(SearchControl::new()));
        assert_eq!(end.unwrap().hashes, 512);
        found
    };
    assert!(expected.iter().any(|f| f.nonce < 128), "a share in the first batch: {expected:?}");
    let backend =
        GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::OutOfMemoryAfterFirstBatch).unwrap();
    let (found, mut found_rx) = found_channel();
    let dispatch = WorkDispatch::start(vec![Box::new(backend) as Device], found);
    let work = Arc::new(Work {
        id: "oom".into(),
        height: 1,
        input: job.input.clone(),
        target: job.target,
        share_difficulty: 16,
        network_difficulty: 1 << 40,
        nonces: job.nonces,
        pool: None,
        received: Instant::now(),
    });
    let slot = dispatch.slots()[0].clone();
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    dispatch.set_work(Some(work.clone()));
    until("the search to sit out", &|| slot.sitting_out.load(Relaxed));
    assert_eq!(slot.hashes(), 128, "one batch read back before the fault");
    dispatch.set_work(Some(work.clone()));
    until("the work's end", &|| !slot.sitting_out.load(Relaxed));
    assert_eq!(slot.hashes(), 512, "the first batch is not hashed again");
    dispatch.stop();
    let mut found = Vec::new();
    while let Ok((_, find)) = found_rx.try_recv() {
        found.push(find);
    }
    found.sort_by_key(|f| f.nonce);
    assert_eq!(found, expected, "each share once");
}

/// A bench whose search stopped part-way says why (and `vision-miner
/// bench` then fails): a rate from the batches before it is no pass.
#[test]
fn a_bench_that_stopped_part_way_says_so() {
    if !require_adapter() {
        return;
    }
    let job = job(small_params(), NonceRange::new(0, 256), 2);
    let backend = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::OutOfMemoryMidSearch).unwrap();
    let report = vision_miner::bench::bench_gpu(&backend, Duration::from_millis(200));
    let error = report.error.as_deref().expect("the stop is reported");
    assert!(error.contains("out of memory"), "{error}");
    assert!(report.to_string().contains("STOPPED PART-WAY"), "{report}");
}

#[test]
fn a_lost_device_is_disabled_without_ending_the_process() {
    if !require_adapter() {
        return;
    }
    let job = job(small_params(), NonceRange::new(0, 256), 2);
    let backend = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::LoseDevice).unwrap();
    let (end, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    assert!(end.is_err(), "{end:?}");
    assert!(found.is_empty());
    assert!(backend.is_disabled());
}

/// A step that outlasts the hang timeout (a real dispatch, on the real
/// adapter, against a timeout of a microsecond, which no step meets even
/// on a fast card) disables the device: the
/// search ends with the device lost, later ones fail at once, and the
/// backend is dropped (its device kept, never waited for). (lavapipe runs
/// one submission at a time, blocking the next in its submit: how long a
/// hung dispatch holds the device thread up is not measured here.)
#[test]
fn a_device_hung_past_its_timeout_is_disabled_and_given_up() {
    if !require_adapter() {
        return;
    }
    let job = job(small_params(), NonceRange::new(0, 2_048), 2);
    let fault = InjectedFault::HangTimeout(Duration::from_micros(1));
    let backend = GpuBackend::start(0, None, None, goals(2_048), &job, fault).unwrap();
    let (end, found) = collect(&backend, &job, &Arc::new(SearchControl::new()));
    match end {
        Err(gpu::GpuError::DeviceLost(why)) => assert!(why.contains("ran over 1µs (hung)"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(found.is_empty());
    assert!(backend.is_disabled());
    assert!(matches!(collect(&backend, &job, &Arc::new(SearchControl::new())).0, Err(gpu::GpuError::Disabled(_))));
    drop(backend);
}

#[test]
fn the_miner_learns_when_its_last_device_stops() {
    use vision_miner::client::work_dispatch::{found_channel, Device, Work, WorkDispatch};
    if !require_adapter() {
        return;
    }
    let job = job(small_params(), NonceRange::new(0, 256), 2);
    let backend = GpuBackend::start(0, None, None, goals(128), &job, InjectedFault::LoseDevice).unwrap();
    let (found, _found_rx) = found_channel();
    let dispatch = WorkDispatch::start(vec![Box::new(backend) as Device], found);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let stopped =
        |wait: Duration| runtime.block_on(async { tokio::time::timeout(wait, dispatch.every_device_stopped()).await });
    assert!(stopped(Duration::from_millis(200)).is_err(), "no device has failed yet");
    assert!(!dispatch.has_every_device_stopped());
    dispatch.set_work(Some(Arc::new(Work {
        id: "lost".into(),
        height: 1,
        input: job.input.clone(),
        target: job.target,
        share_difficulty: 2,
        network_difficulty: 2,
        nonces: job.nonces,
        pool: None,
        received: Instant::now(),
    })));
    assert!(stopped(Duration::from_secs(60)).is_ok(), "a miner whose only device is lost must hear of it");
    assert!(dispatch.has_every_device_stopped());
    assert!(dispatch.slots()[0].disabled.load(std::sync::atomic::Ordering::Relaxed));
    dispatch.stop();
}

#[test]
fn without_any_driver_auto_says_so_once_and_benches_the_cpu() {
    // Point the Vulkan loader at no driver at all.
    let out = Command::new(env!("CARGO_BIN_EXE_vision-miner"))
        .args(["bench", "--backend", "auto", "--seconds", "0.3", "--threads", "1", "--json"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("no GPU adapter found").count(), 1, "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backend"], "cpu");
    let gpu_only = Command::new(env!("CARGO_BIN_EXE_vision-miner"))
        .args(["bench", "--backend", "gpu", "--seconds", "0.3"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert_eq!(gpu_only.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gpu_only.stderr).contains("no GPU adapter found"));
}

/// A legal job whose tables are too wide for a workgroup of hashes in one
/// storage binding (70,000 writes a hash: 2 MiB of values, 64 to lavapipe's
/// 128 MiB bindings) runs in part-filled workgroups and hashes as the CPU
/// does, on a `hash` call and while mining; the job after it, with
/// ordinary tables, runs on its own tuned shape again, not on the few
/// hashes the wide tables left room for.
#[test]
fn a_job_with_tables_too_wide_for_a_workgroup_mines_and_the_next_gets_its_shape_back() {
    if !require_adapter() {
        return;
    }
    let wide = Params { mix_iters: 70_000, write_every: 1, ..small_params() };
    let opened = device(ShaderVariant::Native);
    let per_segment = opened.max_segment_hashes(&wide);
    eprintln!("{} hashes of the wide job per segment", per_segment);
    // Not rounded down to no workgroup at all (then one hash a segment).
    assert!(per_segment >= 64, "{per_segment}");
    let wide_job = job(wide, NonceRange::new(5_000, 5_008), 1);
    let expected: Vec<_> = {
        let mut cpu = FastEngine::new();
        (5_000..5_008).map(|n| cpu.hash(&wide_job.input, n)).collect()
    };
    assert_eq!(gpu::hash_nonces(opened, &wide_job.input, &[5_003]).unwrap(), [expected[3]]);

    let ordinary = |nonces| job(small_params(), nonces, 8);
    let backend =
        GpuBackend::start(0, None, None, goals(512), &ordinary(NonceRange::new(0, 1)), InjectedFault::None).unwrap();
    assert_eq!(backend.shape().hashes(), 512);
    let (end, found) = collect(&backend, &wide_job, &Arc::new(SearchControl::new()));
    assert_eq!(end.unwrap().hashes, 8);
    assert_eq!(found.iter().map(|f| f.digest).collect::<Vec<_>>(), expected);
    assert!(!backend.is_disabled());

    let before = backend.stats();
    mines_what_the_cpu_finds(&backend, &ordinary(NonceRange::new(9_000, 9_000 + 2_048)));
    assert_eq!(backend.stats().since(&before).batches, 4, "2,048 hashes in batches of 512");
}

/// A memory budget that holds fewer hashes of a wide-table job than a
/// workgroup: the tuner stays within it (a part-filled segment) and the
/// device mines the job as the CPU does, rather than sitting it out or
/// allocating a workgroup's worth past the budget.
#[test]
fn a_budget_below_a_workgroup_of_wide_tables_is_kept() {
    if !require_adapter() {
        return;
    }
    let wide = Params { mix_iters: 70_000, write_every: 1, ..small_params() };
    let wide_job = job(wide, NonceRange::new(7_000, 7_006), 1);
    let budget = 100 << 20;
    let backend =
        GpuBackend::start(0, None, None, growing_to_the_budget(budget), &wide_job, InjectedFault::None).unwrap();
    let tables = u64::from(backend.shape().hashes()) * backend.table_bytes_per_hash();
    assert!(tables <= budget, "{:?}: {tables} bytes of tables", backend.shape());
    assert!(backend.shape().hashes() < 128, "{:?}", backend.shape());
    let (end, found) = collect(&backend, &wide_job, &Arc::new(SearchControl::new()));
    assert_eq!(end.unwrap().hashes, 6);
    let mut cpu = FastEngine::new();
    let expected: Vec<_> = (7_000..7_006).map(|n| cpu.hash(&wide_job.input, n)).collect();
    assert_eq!(found.iter().map(|f| f.digest).collect::<Vec<_>>(), expected);
}

#[test]
fn a_new_job_interrupts_a_running_batch() {
    if !require_adapter() {
        return;
    }
    // Consensus params: one batch is 64 dispatches long, and the cancel must
    // land inside the first one. 512 hashes take over a second on lavapipe
    // (about 400 H/s); a hardware GPU gets a batch it cannot finish in the
    // wait either (16k hashes: about 0.2 s on an H200, 6 GiB of tables).
    let software = gpu::adapters::summaries()[0].is_software;
    let batch = if software { 512 } else { 16_384 };
    let job = job(Params::CONSENSUS, NonceRange::new(0, u64::MAX), u64::MAX);
    let backend = GpuBackend::start(0, None, None, goals(batch), &job, InjectedFault::None).unwrap();
    let control = Arc::new(SearchControl::new());
    let (end, stop_time) = std::thread::scope(|s| {
        let search = s.spawn(|| collect(&backend, &job, &control).0);
        std::thread::sleep(Duration::from_millis(if software { 300 } else { 30 }));
        let cancelled_at = Instant::now();
        control.cancel();
        let end = search.join().unwrap();
        (end, cancelled_at.elapsed())
    });
    let end = end.unwrap();
    assert!(end.cancelled);
    // Stopping waits only for the slices already queued, not the whole batch.
    assert!(stop_time < Duration::from_secs(20), "took {stop_time:?}");
    assert_eq!((end.hashes, backend.stats().batches), (0, 0), "the cancel interrupted the first batch");
}

#[test]
fn devices_command_lists_the_adapter_and_the_cpu() {
    if !require_adapter() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vision-miner")).args(["devices", "--json"]).output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gpus = json["gpus"].as_array().unwrap();
    assert!(!gpus.is_empty());
    for key in ["name", "backend", "device_type", "shader_int64", "max_buffer_size", "max_storage_buffer_binding_size"]
    {
        assert!(gpus[0].get(key).is_some(), "missing {key}");
    }
    // Vulkan reports the card's memory (wgpu does not; it is read through ash).
    for gpu in gpus.iter().filter(|g| g["backend"] == "vulkan") {
        let total = gpu["memory_bytes"].as_u64().unwrap_or_else(|| panic!("no memory: {gpu}"));
        assert!(total >= 64 << 20, "{gpu}");
        if let Some(free) = gpu["memory_free_bytes"].as_u64() {
            assert!(free <= total, "{gpu}");
        }
    }
    assert!(json["cpu"]["threads"].as_u64().unwrap() >= 1);
}

#[test]
fn hash_command_on_the_gpu_matches_the_cpu_and_selects_devices() {
    if !require_adapter() {
        return;
    }
    let v = vectors::hash_vectors().into_iter().find(|v| !v.is_consensus()).unwrap();
    let p = v.params;
    let args = |extra: &[&str]| -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vision-miner"));
        cmd.args(["hash", "--seed", &v.seed, "--epoch", &v.epoch.to_string(), "--header", &v.header]);
        cmd.args(["--nonce", &v.nonce.to_string(), "--dataset-mb", &p.dataset_mb.to_string()]);
        cmd.args(["--scratch-mb", &p.scratch_mb.to_string(), "--mix-iters", &p.mix_iters.to_string()]);
        cmd.args(["--reads-per-iter", &p.reads_per_iter.to_string(), "--write-every", &p.write_every.to_string()]);
        cmd.args(extra).output().unwrap()
    };
    for shader in ["native", "emulated"] {
        let out = args(&["--engine", "gpu", "--device", "0", "--shader", shader]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v.digest, "{shader}");
    }
    // Naming an adapter that is not there is bad input (as in `bench`).
    let missing = args(&["--engine", "gpu", "--device", "99"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no GPU adapter with index 99"));
}

#[test]
fn the_probe_runs_in_a_child_process() {
    if !require_adapter() {
        return;
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_vision-miner"));
    gpu::probe_in_child(exe, 0, None, Duration::from_secs(120)).unwrap();
    let err = gpu::probe_in_child(exe, 99, None, Duration::from_secs(120)).unwrap_err().to_string();
    assert!(err.contains("exited with code"), "{err}");
    // A chatty probe (here a megabyte of trace logs, past a pipe's 64 KiB)
    // is read while it runs: it does not block on its pipe and time out.
    let started = Instant::now();
    let out = Command::new(exe)
        .args(["bench", "--backend", "gpu", "--seconds", "0.3", "--gpu-batch", "128", "--json"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default());
    assert!(started.elapsed() < Duration::from_secs(60), "the probe waited on its pipe: {:?}", started.elapsed());
}
