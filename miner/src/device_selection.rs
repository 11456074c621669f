//! Which backends and devices to mine on, from `--backend` and `--device`.

use std::collections::BTreeMap;

use crate::backend::gpu::adapters::{self, AdapterSummary};

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// CPU threads only.
    Cpu,
    /// GPUs only (a software adapter such as lavapipe counts when it is the only one).
    Gpu,
    /// Every hardware GPU; the CPU when there is none.
    Auto,
    /// Every hardware GPU (or the adapters named) and the CPU beside them:
    /// its threads default to one per core less one per GPU, which the
    /// GPU's own thread and its CPU re-checks use.
    All,
}

/// The devices a choice resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPlan {
    /// Adapter indices to mine on.
    pub gpus: Vec<usize>,
    /// For a card in `gpus` also found through another driver or backend,
    /// those adapters, most preferred first: tried in turn if it fails to
    /// start.
    pub alternates: BTreeMap<usize, Vec<usize>>,
    pub cpu: bool,
    /// Something the user should be told once (e.g. no GPU, CPU fallback).
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("--backend gpu: no GPU adapter found (no Vulkan, Metal or DX12 driver; on Linux try mesa-vulkan-drivers)")]
    NoAdapter,
    #[error("--device {index}: there is no such adapter ({count} found; see `vision-miner devices`)")]
    NoSuchDevice { index: usize, count: usize },
}

/// Resolves `choice` against the adapters this machine has; `devices`,
/// when not empty, are the adapters named (`--device`), exactly.
pub fn plan(choice: BackendChoice, devices: &[usize]) -> Result<BackendPlan, SelectionError> {
    let adapters = if choice == BackendChoice::Cpu { Vec::new() } else { adapters::summaries() };
    plan_for(&adapters, choice, devices)
}

/// [`plan`] over a given adapter list.
pub fn plan_for(
    adapters: &[AdapterSummary],
    choice: BackendChoice,
    devices: &[usize],
) -> Result<BackendPlan, SelectionError> {
    let cpu_only =
        |note: Option<String>| BackendPlan { gpus: Vec::new(), alternates: BTreeMap::new(), cpu: true, note };
    if choice == BackendChoice::Cpu {
        return Ok(cpu_only(None));
    }
    if !devices.is_empty() {
        if let Some(&index) = devices.iter().find(|&&index| index >= adapters.len()) {
            return Err(SelectionError::NoSuchDevice { index, count: adapters.len() });
        }
        let mut gpus = devices.to_vec();
        gpus.sort_unstable();
        gpus.dedup();
        let cpu = choice == BackendChoice::All;
        return Ok(BackendPlan { gpus, alternates: BTreeMap::new(), cpu, note: None });
    }
    let (hardware, alternates) = one_per_card(adapters.iter().filter(|a| !a.is_software));
    let gpus = |gpus| BackendPlan { gpus, alternates: alternates.clone(), cpu: false, note: None };
    match choice {
        BackendChoice::Gpu if adapters.is_empty() => Err(SelectionError::NoAdapter),
        BackendChoice::Gpu if hardware.is_empty() => Ok(BackendPlan {
            gpus: adapters.iter().map(|a| a.index).collect(),
            alternates: BTreeMap::new(),
            cpu: false,
            note: None,
        }),
        BackendChoice::Gpu => Ok(gpus(hardware)),
        // (Software adapters share the CPU's cores: not beside the CPU.)
        BackendChoice::All if hardware.is_empty() => Ok(cpu_only(Some(
            "no hardware GPU found: mining on the CPU alone (name a software adapter with --device to add it)"
                .to_string(),
        ))),
        BackendChoice::All => Ok(BackendPlan { cpu: true, ..gpus(hardware) }),
        _ if hardware.is_empty() => Ok(cpu_only(Some(if adapters.is_empty() {
            "no GPU adapter found (no Vulkan, Metal or DX12 driver): mining on the CPU".to_string()
        } else {
            "only software GPU adapters found (they share the CPU's cores): mining on the CPU; use --backend gpu to use them".to_string()
        }))),
        _ => Ok(gpus(hardware)),
    }
}

/// Each card once: on Windows wgpu finds a card through Vulkan and again
/// through DX12, and mining both would run two tuned batches on one card.
/// Adapters are grouped by card model (PCI vendor and device ids, or the
/// name where the backend gives no ids). Each backend's adapters of a model
/// are counted as cards ([`cards_on_backend`]: two Vulkan drivers of one
/// card count once), and the backend that shows the most is mined, ties
/// going to Vulkan, then Metal, then DX12: where Vulkan shows one of two
/// twins and DX12 both, DX12's are mined. A kept adapter's alternates, for
/// a driver that fails to start, are its other drivers, then, where every
/// backend shows the model once (so which adapter is the same card is
/// known), the other backends' adapters by preference.
fn one_per_card<'a>(adapters: impl Iterator<Item = &'a AdapterSummary>) -> (Vec<usize>, BTreeMap<usize, Vec<usize>>) {
    let adapters: Vec<&AdapterSummary> = adapters.collect();
    let model = |a: &AdapterSummary| {
        if a.vendor_id == 0 && a.device_id == 0 {
            (0, 0, a.name.clone())
        } else {
            (a.vendor_id, a.device_id, String::new())
        }
    };
    let rank = |backend: &str| match backend {
        "vulkan" => 0,
        "metal" => 1,
        "dx12" => 2,
        _ => 3,
    };
    let mut kept = Vec::new();
    let mut alternates: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut models: Vec<_> = adapters.iter().map(|a| model(a)).collect();
    models.sort();
    models.dedup();
    for m in models {
        let mut backends: Vec<&str> = adapters.iter().filter(|a| model(a) == m).map(|a| a.backend.as_str()).collect();
        backends.sort_by_key(|b| rank(b));
        backends.dedup();
        // Each backend's cards of the model, in preference order.
        let shown: Vec<Vec<Card>> = backends
            .iter()
            .map(|&backend| {
                cards_on_backend(adapters.iter().copied().filter(|a| model(a) == m && a.backend == backend).collect())
            })
            .collect();
        // The most cards, then the most preferred backend (`min_by_key`
        // keeps the first of equals).
        let Some(best) = (0..shown.len()).min_by_key(|&i| std::cmp::Reverse(shown[i].len())) else {
            continue;
        };
        let seen_once_everywhere = shown.iter().all(|cards| cards.len() == 1);
        for (card, drivers) in &shown[best] {
            let mut others: Vec<usize> = drivers.iter().map(|a| a.index).collect();
            if seen_once_everywhere {
                for (_, cards) in shown.iter().enumerate().filter(|(i, _)| *i != best) {
                    others.extend(cards.iter().flat_map(|(a, more)| std::iter::once(a).chain(more)).map(|a| a.index));
                }
            }
            kept.push(card.index);
            if !others.is_empty() {
                alternates.insert(card.index, others);
            }
        }
    }
    kept.sort_unstable();
    (kept, alternates)
}

/// A card as a backend lists it: an adapter, and its other drivers' adapters.
type Card<'a> = (&'a AdapterSummary, Vec<&'a AdapterSummary>);

/// One backend's adapters of one card model, as cards: each with its other
/// drivers' adapters of the same card. Only Vulkan lists a card through
/// two drivers (RADV and AMDVLK on Linux). A driver lists each card once,
/// so the driver listing the most (the first on a tie) gives the cards;
/// another driver's adapter is one of them where both report the same PCI
/// bus address (DX12 looks the address up by the ids, so twins share one
/// there), or, without one, where there is only one card. Other adapters
/// are left out, neither mined nor alternates: which card each is, is
/// unknown.
fn cards_on_backend(adapters: Vec<&AdapterSummary>) -> Vec<Card<'_>> {
    if adapters.first().is_none_or(|a| a.backend != "vulkan") {
        return adapters.into_iter().map(|a| (a, Vec::new())).collect();
    }
    let mut drivers: Vec<&str> = Vec::new();
    for a in &adapters {
        if !drivers.contains(&a.driver.as_str()) {
            drivers.push(&a.driver);
        }
    }
    let listed = |driver: &str| adapters.iter().filter(|a| a.driver == driver).count();
    let mut by_count = drivers.clone();
    // (Stable: the first driver wins a tie.)
    by_count.sort_by_key(|d| std::cmp::Reverse(listed(d)));
    let mut cards: Vec<Card> = adapters.iter().filter(|a| a.driver == by_count[0]).map(|a| (*a, Vec::new())).collect();
    for driver in &by_count[1..] {
        for a in adapters.iter().filter(|a| a.driver == *driver) {
            let only_card = cards.len() == 1;
            let same = cards.iter_mut().find(|(card, _)| {
                (!a.pci_bus_id.is_empty() && card.pci_bus_id == a.pci_bus_id) || (a.pci_bus_id.is_empty() && only_card)
            });
            if let Some((_, others)) = same {
                others.push(a);
            }
        }
    }
    cards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: usize, is_software: bool) -> AdapterSummary {
        AdapterSummary {
            index,
            name: format!("adapter {index}"),
            backend: "vulkan".into(),
            device_type: if is_software { "Cpu".into() } else { "DiscreteGpu".into() },
            vendor_id: 0x10de,
            device_id: 0x2684 + index as u32,
            pci_bus_id: String::new(),
            driver: String::new(),
            shader_int64: true,
            timestamp_query: false,
            max_buffer_size: 1 << 30,
            max_storage_buffer_binding_size: 1 << 27,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroup_size_x: 256,
            is_software,
            memory_bytes: None,
            memory_free_bytes: None,
        }
    }

    #[test]
    fn auto_uses_hardware_gpus_and_falls_back_to_the_cpu() {
        let mixed = [adapter(0, true), adapter(1, false), adapter(2, false)];
        let plan = plan_for(&mixed, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.cpu), (vec![1, 2], false));

        let software_only = [adapter(0, true)];
        let plan = plan_for(&software_only, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus.len(), plan.cpu), (0, true));
        assert!(plan.note.unwrap().contains("software"));

        let plan = plan_for(&[], BackendChoice::Auto, &[]).unwrap();
        assert!(plan.cpu && plan.note.unwrap().contains("no GPU adapter"));
    }

    #[test]
    fn a_card_found_through_two_backends_is_mined_once() {
        let through = |index: usize, backend: &str, device_id: u32| AdapterSummary {
            backend: backend.into(),
            device_id,
            ..adapter(index, false)
        };
        // Windows: two different cards, each through Vulkan and DX12.
        let windows = [through(0, "vulkan", 1), through(1, "dx12", 1), through(2, "dx12", 2), through(3, "vulkan", 2)];
        let plan = plan_for(&windows, BackendChoice::Auto, &[]).unwrap();
        assert_eq!(plan.gpus, vec![0, 3]);
        // Each card's DX12 adapter is its fallback.
        assert_eq!(plan.alternates, BTreeMap::from([(0, vec![1]), (3, vec![2])]));
        assert_eq!(plan_for(&windows, BackendChoice::Gpu, &[]).unwrap().gpus, vec![0, 3]);
        // Two identical cards: both kept, through the one backend.
        let twins = [through(0, "vulkan", 1), through(1, "vulkan", 1), through(2, "dx12", 1), through(3, "dx12", 1)];
        let plan = plan_for(&twins, BackendChoice::Auto, &[]).unwrap();
        assert_eq!(plan.gpus, vec![0, 1]);
        assert!(plan.alternates.is_empty(), "which DX12 twin is which card is unknown");
        // A card only DX12 sees is kept.
        let dx12_only = [through(0, "vulkan", 1), through(1, "dx12", 7)];
        assert_eq!(plan_for(&dx12_only, BackendChoice::Auto, &[]).unwrap().gpus, vec![0, 1]);
        // Two drivers of one card on one backend (RADV and AMDVLK): one bus
        // address. Twins have two; each twin's other driver is its fallback.
        let on_bus = |index, driver: &str, bus: &str| AdapterSummary {
            driver: driver.into(),
            pci_bus_id: bus.into(),
            ..through(index, "vulkan", 1)
        };
        let drivers =
            [on_bus(0, "radv", "0000:03:00.0"), on_bus(1, "amdvlk", "0000:03:00.0"), on_bus(2, "radv", "0000:04:00.0")];
        let plan = plan_for(&drivers, BackendChoice::Auto, &[]).unwrap();
        assert_eq!(plan.gpus, vec![0, 2]);
        assert_eq!(plan.alternates, BTreeMap::from([(0, vec![1])]));
        let one_card = [on_bus(0, "radv", "0000:03:00.0"), on_bus(1, "amdvlk", "0000:03:00.0"), through(2, "dx12", 1)];
        let plan = plan_for(&one_card, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.alternates), (vec![0], BTreeMap::from([(0, vec![1, 2])])));
        // Vulkan sees one of two twins, DX12 both: DX12's are mined, without
        // alternates (which is Vulkan's card is unknown).
        let half_seen = [through(0, "vulkan", 1), through(1, "dx12", 1), through(2, "dx12", 1)];
        let plan = plan_for(&half_seen, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.alternates.is_empty()), (vec![1, 2], true));
        // Two drivers without bus addresses: one card through each (the same
        // count per driver), or twins through one driver.
        let driven = |index, driver: &str| AdapterSummary { driver: driver.into(), ..through(index, "vulkan", 1) };
        let two_drivers = [driven(0, "radv"), driven(1, "amdvlk")];
        let plan = plan_for(&two_drivers, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.alternates), (vec![0], BTreeMap::from([(0, vec![1])])));
        // Twins without bus addresses: which other-driver adapter is which
        // twin is unknown, so those are left out.
        let twins_two_drivers = [driven(0, "radv"), driven(1, "radv"), driven(2, "amdvlk"), driven(3, "amdvlk")];
        let plan = plan_for(&twins_two_drivers, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.alternates.is_empty()), (vec![0, 1], true));
        // One driver reports the bus address, the other does not.
        let bussed =
            |index, driver: &str, bus: &str| AdapterSummary { pci_bus_id: bus.into(), ..driven(index, driver) };
        let mixed = [bussed(0, "radv", "0000:03:00.0"), driven(1, "amdvlk")];
        let plan = plan_for(&mixed, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.alternates), (vec![0], BTreeMap::from([(0, vec![1])])));
        // Twins with bus addresses on RADV, and AMDVLK's one adapter without.
        let twins_and_one = [bussed(0, "radv", "0000:03:00.0"), bussed(1, "radv", "0000:04:00.0"), driven(2, "amdvlk")];
        let plan = plan_for(&twins_and_one, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.alternates.is_empty()), (vec![0, 1], true));
        // AMDVLK lists more (twins), RADV one of them: AMDVLK's are the cards.
        let more_on_amdvlk = [
            bussed(0, "radv", "0000:04:00.0"),
            bussed(1, "amdvlk", "0000:03:00.0"),
            bussed(2, "amdvlk", "0000:04:00.0"),
        ];
        let plan = plan_for(&more_on_amdvlk, BackendChoice::Auto, &[]).unwrap();
        assert_eq!((plan.gpus, plan.alternates), (vec![1, 2], BTreeMap::from([(2, vec![0])])));
        let one_driver_twins = [driven(0, "radv"), driven(1, "radv")];
        assert_eq!(plan_for(&one_driver_twins, BackendChoice::Auto, &[]).unwrap().gpus, vec![0, 1]);
        // DX12 twins share the bus address DX12 reports: both kept.
        let dx12_twins = [
            AdapterSummary { pci_bus_id: "0000:03:00.0".into(), ..through(0, "dx12", 1) },
            AdapterSummary { pci_bus_id: "0000:03:00.0".into(), ..through(1, "dx12", 1) },
        ];
        assert_eq!(plan_for(&dx12_twins, BackendChoice::Auto, &[]).unwrap().gpus, vec![0, 1]);
        // No ids: told apart by name.
        let unnamed = |index, backend: &str, name: &str| AdapterSummary {
            name: name.into(),
            vendor_id: 0,
            device_id: 0,
            ..through(index, backend, 0)
        };
        let no_ids = [unnamed(0, "vulkan", "A"), unnamed(1, "dx12", "A"), unnamed(2, "dx12", "B")];
        assert_eq!(plan_for(&no_ids, BackendChoice::Auto, &[]).unwrap().gpus, vec![0, 2]);
        // --device still takes exactly the adapter named.
        assert_eq!(plan_for(&windows, BackendChoice::Gpu, &[1]).unwrap().gpus, vec![1]);
    }

    #[test]
    fn gpu_takes_software_adapters_only_when_nothing_else_exists() {
        assert_eq!(plan_for(&[adapter(0, true)], BackendChoice::Gpu, &[]).unwrap().gpus, vec![0]);
        assert_eq!(plan_for(&[adapter(0, true), adapter(1, false)], BackendChoice::Gpu, &[]).unwrap().gpus, vec![1]);
        assert_eq!(plan_for(&[], BackendChoice::Gpu, &[]), Err(SelectionError::NoAdapter));
    }

    #[test]
    fn device_flag_selects_exactly_the_adapters_named() {
        let adapters = [adapter(0, true), adapter(1, false), adapter(2, false)];
        assert_eq!(plan_for(&adapters, BackendChoice::Gpu, &[0]).unwrap().gpus, vec![0]);
        assert_eq!(plan_for(&adapters, BackendChoice::Auto, &[0]).unwrap().gpus, vec![0]);
        // A list, in adapter order, each once; no CPU beside them.
        let plan = plan_for(&adapters, BackendChoice::Auto, &[2, 0, 2]).unwrap();
        assert_eq!((plan.gpus, plan.cpu), (vec![0, 2], false));
        assert_eq!(
            plan_for(&adapters, BackendChoice::Gpu, &[1, 5]),
            Err(SelectionError::NoSuchDevice { index: 5, count: 3 })
        );
        assert_eq!(plan_for(&adapters, BackendChoice::Cpu, &[1]).unwrap().gpus, Vec::<usize>::new());
    }

    /// `all`: `auto`'s GPUs (or the adapters named, software ones too) and
    /// the CPU beside them, always.
    #[test]
    fn all_mines_the_cpu_beside_the_gpus() {
        let mixed = [adapter(0, true), adapter(1, false), adapter(2, false)];
        // (adapters, named, GPUs mined, a note said)
        type Case<'a> = (&'a [AdapterSummary], &'a [usize], Vec<usize>, bool);
        let cases: [Case; 5] = [
            (&mixed, &[], vec![1, 2], false),
            (&mixed, &[2, 0], vec![0, 2], false),
            (&mixed[..1], &[], vec![], true),
            (&mixed[..1], &[0], vec![0], false),
            (&[], &[], vec![], true),
        ];
        for (adapters, named, gpus, noted) in cases {
            let plan = plan_for(adapters, BackendChoice::All, named).unwrap();
            assert_eq!((&plan.gpus, plan.cpu, plan.note.is_some()), (&gpus, true, noted), "{named:?}");
        }
        assert_eq!(
            plan_for(&mixed, BackendChoice::All, &[3]),
            Err(SelectionError::NoSuchDevice { index: 3, count: 3 })
        );
    }
}
