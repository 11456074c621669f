//! Mining, from a resolved configuration to a stop: the miner's counterpart
//! of the coordinator's `serve`.
//!
//! [`run`] starts the devices ([`start_devices`]: GPUs that pass the
//! child-process probe, then the CPU where chosen (`cpu`, `all`) or as the
//! fallback, not with `--backend gpu` or `--device`), the
//! hash-rate sampler, the status line, the local API, and the pool or solo
//! session, and runs until the session ends for good or `shutdown` resolves
//! (the session then sends what was already found, for a few seconds).
//! [`start_gpu`] is the one probe-open-tune path, for mining and `bench`.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::gpu::{self, tuning::TuningGoals, GpuBackend, GpuError, ShaderVariant};
use crate::backend::CpuDevice;
use crate::bench::bench_job;
use crate::client::miner_config::{MinerConfig, MiningMode};
use crate::client::miner_status::{status_line, MinerStatus, SAMPLE_EVERY};
use crate::client::pool_switch::PoolSwitch;
use crate::client::session::{self, PoolSession};
use crate::client::solo_session::{self, SoloSession};
use crate::client::work_dispatch::{self, Device, WorkDispatch};
use crate::client::{api_listener, local_api, node_client::NodeClient, pool_client::PoolClient};
use crate::device_selection::{self, BackendChoice};
use crate::MinerError;

/// How long the child-process probe of a GPU may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Probes GPU `index` in a child process (some drivers crash while building
/// pipelines), then opens and tunes it. The error, logged, when either
/// fails: mining goes on without it.
pub fn start_gpu(
    index: usize,
    shader: Option<ShaderVariant>,
    filter: Option<bool>,
    goals: TuningGoals,
) -> Result<GpuBackend, gpu::GpuError> {
    let exe = std::env::current_exe().map_err(|err| {
        let err = gpu::GpuError::Probe(format!("cannot find this executable for the GPU probe: {err}"));
        tracing::error!("skipping GPU #{index}: {err}");
        err
    })?;
    if let Err(reason) = gpu::probe_in_child(&exe, index, shader, PROBE_TIMEOUT) {
        tracing::error!("skipping GPU #{index}: {reason}");
        return Err(reason);
    }
    // A driver that fails inside wgpu can panic it (a device lost while
    // tuning, the likeliest moment for a reset): skip the device, as for
    // any other start-up failure, rather than end the miner.
    let started = std::panic::catch_unwind(|| {
        GpuBackend::start(index, shader, filter, goals, &bench_job(), gpu::InjectedFault::None)
    })
    .unwrap_or_else(|panic| {
        let why = gpu::device::panic_message(panic.as_ref()).to_string();
        Err(gpu::GpuError::DeviceLost(format!("GPU #{index}: panicked: {why}")))
    });
    match started {
        Ok(backend) => {
            tracing::info!(
                "GPU #{index} {} ready ({} shader, batch {} hashes, split {}, table budget {} MiB{})",
                backend.summary().name,
                backend.variant(),
                backend.shape().hashes(),
                backend.shape().split,
                backend.memory_budget() >> 20,
                if goals.memory_budget.is_some() { ", --gpu-memory-mb" } else { "" },
            );
            Ok(backend)
        }
        Err(err) => {
            tracing::error!("skipping GPU #{index}: {err}");
            Err(err)
        }
    }
}

/// The devices to mine on: GPUs that pass the probe and start, and the CPU
/// where chosen (or as the fallback when no GPU works, unless `--backend
/// gpu` or `--device` asked for GPUs only). Blocking (probes and
/// tuning take seconds).
pub fn start_devices(config: &MinerConfig) -> Result<Vec<Device>, MinerError> {
    let plan = device_selection::plan(config.backend, &config.devices)?;
    if let Some(note) = &plan.note {
        tracing::warn!("{note}");
    }
    let goals = TuningGoals { memory_budget: config.gpu_memory_mb.map(|mb| mb << 20), ..Default::default() };
    let mut devices: Vec<Device> = Vec::new();
    for &index in &plan.gpus {
        let mut started = start_gpu(index, config.shader, None, goals);
        // The same card through another backend or driver, where this one
        // failed its probe or open (not where the device was lost while
        // tuning: the other would fail too; a probe that hung is retried,
        // after its 120 s).
        for &alternate in plan.alternates.get(&index).into_iter().flatten() {
            match &started {
                Err(GpuError::Probe(_) | GpuError::Device(_) | GpuError::Pipeline(_) | GpuError::Unsupported(_)) => {
                    tracing::warn!("GPU #{index} did not start: trying the same card as GPU #{alternate}");
                    started = start_gpu(alternate, config.shader, None, goals);
                }
                _ => break,
            }
        }
        devices.extend(started.ok().map(|backend| Box::new(backend) as Device));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = cpu_beside(config, &plan, devices.len(), cores);
    if let Some(warning) = cpu.warning {
        tracing::warn!("{warning}");
    }
    let on_cpu = cpu.threads.is_some();
    devices.extend(cpu.threads.map(|threads| Box::new(CpuDevice::new(threads)) as Device));
    if devices.is_empty() {
        let hint = if config.devices.is_empty() { "try --backend cpu" } else { "name others with --device, or none" };
        return Err(MinerError::NoDevice(format!("no GPU passed its probe (see the messages above); {hint}")));
    }
    // (Unless --backend gpu or --device said so, which `ignored_settings` warned of.)
    let gpu_only = config.backend == BackendChoice::Gpu || !config.devices.is_empty();
    if !on_cpu && !gpu_only && config.threads.is_some() {
        tracing::warn!("ignored: --threads (GPUs were found: mining on them only; --backend all adds the CPU)");
    }
    Ok(devices)
}

/// Whether the CPU mines beside the GPUs that started, on how many threads,
/// and what the user is told of it.
#[derive(Debug, PartialEq, Eq)]
struct CpuBeside {
    /// `None`: the CPU does not mine.
    threads: Option<usize>,
    warning: Option<&'static str>,
}

/// [`CpuBeside`] for `config`'s `plan`, once `gpus_started` of its GPUs
/// started, on a machine of `cores` cores.
fn cpu_beside(
    config: &MinerConfig,
    plan: &device_selection::BackendPlan,
    gpus_started: usize,
    cores: usize,
) -> CpuBeside {
    // GPUs asked for (--backend gpu, or named by --device) are those or
    // none; `all` adds the CPU to them.
    let gpu_only = config.backend == BackendChoice::Gpu || !config.devices.is_empty();
    if !plan.cpu && (gpus_started > 0 || gpu_only) {
        return CpuBeside { threads: None, warning: None };
    }
    let warning = if !plan.cpu {
        Some("no GPU could be used: mining on the CPU")
    } else if !plan.gpus.is_empty() && gpus_started == 0 {
        // (`all`: the CPU was asked for beside them, so it mines on.)
        Some("no GPU could be used: mining on the CPU alone, on every core")
    } else {
        None
    };
    // Beside GPUs (`--backend all`), a core each is left to their threads
    // (the queue and the CPU re-check of what they find).
    CpuBeside { threads: Some(config.threads.unwrap_or_else(|| cores.saturating_sub(gpus_started).max(1))), warning }
}

/// Mines with `config` until the session ends for good (an error) or
/// `shutdown` resolves (`Ok`).
pub async fn run(config: MinerConfig, shutdown: impl Future<Output = ()>) -> Result<(), MinerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    for ignored in config.ignored_settings() {
        tracing::warn!("ignored: {ignored}");
    }
    // Bound before the devices start: a port taken (a second miner on the
    // host) is said at once, not after minutes of probing and tuning.
    let api_listener = match &config.api {
        Some((addr, _)) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            MinerError::bad_input(format!("cannot serve the status API on {addr}: {e} (use --api-bind or --no-api)"))
        })?),
        None => None,
    };
    let starting = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || start_devices(&config))
    };
    // Probing GPUs can take a while: a stop asked meanwhile is a clean stop
    // (the caller does not wait for the probe left behind).
    let devices = tokio::select! {
        started = starting => started.map_err(MinerError::runtime)??,
        () = shutdown.as_mut() => return Ok(()),
    };
    let (found_tx, found_rx) = work_dispatch::found_channel();
    let dispatch = WorkDispatch::start(devices, found_tx);
    let status = Arc::new(MinerStatus::new());
    let pool_switch = Arc::new(PoolSwitch::new(config.pool_ca.clone()));

    let sampler = {
        let (status, dispatch) = (status.clone(), dispatch.clone());
        tokio::spawn(async move {
            loop {
                let counts = dispatch.slots().iter().map(|s| s.hashes()).collect();
                status.meter.sample(std::time::Instant::now(), counts);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    let printer = config.status_interval.map(|interval| {
        let (status, dispatch) = (status.clone(), dispatch.clone());
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                // (Not println!: a closed stdout, `| head`, must not panic the printer.)
                let _ = writeln!(std::io::stdout().lock(), "{}", status_line(&status.report(&dispatch), color));
            }
        })
    });
    if let (Some(listener), Some((_, token))) = (api_listener, &config.api) {
        let api = local_api::router(local_api::LocalApi {
            status: status.clone(),
            dispatch: dispatch.clone(),
            token: token.as_deref().map(Arc::from),
            pool_switch: matches!(config.mode, MiningMode::Pool(_)).then(|| pool_switch.clone()),
        });
        tracing::info!("status API on http://{}", listener.local_addr().map_err(MinerError::runtime)?);
        tokio::spawn(api_listener::serve(listener, api, api_listener::ApiLimits::DEFAULT));
    }

    // The last device stopping ends the session as a signal would (what
    // was found is still sent), and then the miner (exit code 5).
    let shutdown = {
        let dispatch = dispatch.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = dispatch.every_device_stopped() => {}
            }
        }
    };
    let session = async {
        match &config.mode {
            MiningMode::Pool(urls) => {
                let pools =
                    urls.iter().map(|u| PoolClient::new(u, config.pool_ca.as_ref())).collect::<Result<Vec<_>, _>>()?;
                let pool_session = PoolSession {
                    pools,
                    wallet: config.wallet.clone(),
                    worker_id: config.worker.clone(),
                    worker_name: config.worker.clone(),
                    long_poll: config.long_poll,
                    failback: config.failback,
                    exit_on_ban: config.exit_on_ban,
                };
                Ok(session::run_pool(
                    pool_session,
                    pool_switch.clone(),
                    dispatch.clone(),
                    status.clone(),
                    found_rx,
                    shutdown,
                )
                .await?)
            }
            MiningMode::Solo(url) => {
                let node = NodeClient::new(url, config.node_token.clone())?;
                let solo = SoloSession { node, wallet: config.wallet.clone() };
                Ok(solo_session::run_solo(solo, dispatch.clone(), status.clone(), found_rx, shutdown).await?)
            }
        }
    };
    // The sessions watch `shutdown` themselves: what was found is sent first.
    let mut result = session.await;
    // (The same signal that ended the session: one rule for "every device
    // stopped", the dispatcher's.)
    if result.is_ok() && dispatch.has_every_device_stopped() {
        result = Err(MinerError::NoDevice(
            "every device stopped (see the messages above): nothing is left to mine on".into(),
        ));
    }
    dispatch.stop();
    sampler.abort();
    if let Some(printer) = printer {
        printer.abort();
    }
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::miner_config::MineArgs;
    use device_selection::BackendPlan;

    /// Whether the CPU mines beside the GPUs that started, on how many of
    /// eight cores, and the warning: by backend, GPUs named, threads set,
    /// GPUs planned and started.
    #[test]
    fn the_cpu_mines_beside_the_gpus_on_the_cores_they_leave() {
        const ALONE: Option<&str> = Some("no GPU could be used: mining on the CPU alone, on every core");
        const FALLBACK: Option<&str> = Some("no GPU could be used: mining on the CPU");
        /// What is asked (backend, `--device`, `--threads`), planned
        /// (GPUs, CPU) and started, and the outcome (threads, warning).
        type Case = (
            BackendChoice,
            &'static [usize],
            Option<usize>,
            &'static [usize],
            bool,
            usize,
            Option<usize>,
            Option<&'static str>,
        );
        #[rustfmt::skip]
        let cases: [Case; 11] = [
            // backend, --device, --threads, planned, plan.cpu, started => threads, warning
            (BackendChoice::All, &[], None, &[0, 1], true, 2, Some(6), None),
            (BackendChoice::All, &[], None, &[0, 1], true, 1, Some(7), None),
            (BackendChoice::All, &[], None, &[0, 1], true, 0, Some(8), ALONE),
            (BackendChoice::All, &[], Some(3), &[0], true, 1, Some(3), None),
            (BackendChoice::All, &[], None, &[], true, 0, Some(8), None),
            (BackendChoice::All, &[0], None, &[0], true, 1, Some(7), None),
            (BackendChoice::Auto, &[], None, &[0], false, 1, None, None),
            (BackendChoice::Auto, &[], None, &[0], false, 0, Some(8), FALLBACK),
            (BackendChoice::Gpu, &[], None, &[0], false, 0, None, None),
            (BackendChoice::Auto, &[0], None, &[0], false, 0, None, None),
            (BackendChoice::Cpu, &[], Some(2), &[], true, 0, Some(2), None),
        ];
        for (backend, devices, threads, planned, cpu, started, expected_threads, warning) in cases {
            let args = MineArgs {
                pools: vec!["http://127.0.0.1:7072".into()],
                wallet: Some("land1abc".into()),
                backend: Some(backend),
                devices: devices.to_vec(),
                threads,
                ..MineArgs::default()
            };
            let config = args.resolve().unwrap();
            let plan = BackendPlan { gpus: planned.to_vec(), alternates: Default::default(), cpu, note: None };
            let case = format!("{backend:?}, --device {devices:?}, --threads {threads:?}, {started} of {planned:?}");
            assert_eq!(
                cpu_beside(&config, &plan, started, 8),
                CpuBeside { threads: expected_threads, warning },
                "{case}"
            );
        }
        // One core, one GPU: the CPU still gets a thread.
        let config = MineArgs {
            pools: vec!["http://127.0.0.1:7072".into()],
            wallet: Some("land1abc".into()),
            backend: Some(BackendChoice::All),
            ..MineArgs::default()
        }
        .resolve()
        .unwrap();
        let plan = BackendPlan { gpus: vec![0], alternates: Default::default(), cpu: true, note: None };
        assert_eq!(cpu_beside(&config, &plan, 1, 1).threads, Some(1));
    }
}
