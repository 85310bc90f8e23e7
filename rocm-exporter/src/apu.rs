//! APUs (integrated GPUs such as the Radeon 8060S in a Ryzen AI Max+ 395) and the memory rule.
//!
//! On an APU, amdgpu's "VRAM" is only the carve-out the BIOS reserves (often 512 MiB, often
//! ~90 % used at idle), while the GPU really allocates from GTT: system RAM mapped for it, tens
//! of GiB. The core `gpu_memory_*` series therefore describe **carve-out plus GTT** on an APU
//! (total = vram total + gtt total, used = vram used + gtt used), and VRAM alone on a discrete
//! GPU. The pools stay visible one by one in `amdgpu_memory_*_bytes{pool}`.

use crate::model::{Device, Memory};

/// PCI device ids of AMD APUs with ROCm-capable graphics, and a name for the few we know well
/// enough to name (sysfs has no marketing name on consumer parts).
const APUS: &[(&str, &str)] = &[
    ("0x1586", "Radeon 8060S Graphics (Strix Halo)"),
    ("0x150e", "Radeon 880M/890M (Strix Point)"),
    ("0x15bf", "Radeon 780M (Phoenix)"),
    ("0x15c8", "Radeon 740M (Phoenix2)"),
    ("0x1900", "Radeon 780M (Phoenix3)"),
    ("0x1901", "Radeon Graphics (Phoenix4)"),
    ("0x164e", "Radeon Graphics (Raphael)"),
    ("0x13c0", "Radeon Graphics (Granite Ridge)"),
    ("0x1681", "Radeon 680M (Rembrandt)"),
    ("0x1636", "Radeon Graphics (Renoir)"),
    ("0x1638", "Radeon Graphics (Cezanne)"),
    ("0x164c", "Radeon Graphics (Lucienne)"),
    ("0x15e7", "Radeon Graphics (Barcelo)"),
    ("0x1506", "Radeon 610M (Mendocino)"),
    ("0x163f", "Van Gogh"),
    ("0x15d8", "Radeon Vega (Picasso)"),
    ("0x15dd", "Radeon Vega (Raven Ridge)"),
    ("0x74a0", "Instinct MI300A"),
];

const DISCRETE: &[(&str, &str)] = &[
    ("0x744c", "Radeon RX 7900 XT/XTX (Navi 31)"),
    ("0x73df", "Radeon RX 6700/6700 XT (Navi 22)"),
    ("0x738c", "Instinct MI100"),
    ("0x6861", "Radeon Pro WX 9100 (Vega 10 XT)"),
    ("0x687f", "Radeon RX Vega 56/64 (Vega 10)"),
    ("0x66af", "Radeon VII (Vega 20)"),
    ("0x740c", "Instinct MI250X/MI250"),
    ("0x74a1", "Instinct MI300X"),
];

fn normalise_id(device_id: &str) -> String {
    let id = device_id.trim().to_ascii_lowercase();
    match id.strip_prefix("0x") {
        Some(hex) => format!("0x{hex:0>4}"),
        None => format!("0x{id:0>4}"),
    }
}

pub fn is_known_apu(device_id: &str) -> bool {
    let id = normalise_id(device_id);
    APUS.iter().any(|(known, _)| *known == id)
}

/// A readable name for a PCI device id, or `AMD GPU 0x....` when we do not know it.
pub fn model_name(device_id: &str) -> String {
    known_name(device_id).unwrap_or_else(|| format!("AMD GPU {}", normalise_id(device_id)))
}

fn known_name(device_id: &str) -> Option<String> {
    let id = normalise_id(device_id);
    APUS.iter()
        .chain(DISCRETE)
        .find(|(known, _)| *known == id)
        .map(|(_, name)| name.to_string())
}

/// The `model` label, the same in both backends for the same GPU: the name of its device id
/// where we know one (both backends read the device id), else the backend's own name (rocm-smi's
/// `Card Series`, a server card's sysfs `product_name`: only one backend has each), else
/// `AMD GPU 0x....`.
pub fn model(device_id: Option<&str>, own_name: Option<&str>) -> String {
    device_id
        .and_then(known_name)
        .or_else(|| own_name.map(str::to_string))
        .or_else(|| device_id.map(model_name))
        .unwrap_or_default()
}

/// The APU test, from the strongest evidence to the weakest: a known APU device id; a `vddnb`
/// voltage rail (amdgpu exposes it only on APUs); a small carve-out next to a GTT pool at least
/// eight times larger (the rule LocalAI and others use; dGPUs have GiBs of VRAM).
pub fn looks_like_apu(device: &Device) -> bool {
    if device.device_id.as_deref().is_some_and(is_known_apu) {
        return true;
    }
    if device.voltages.iter().any(|(rail, _)| rail == "vddnb") {
        return true;
    }
    const SMALL_CARVE_OUT: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;
    match (
        device.memory.vram.total_bytes,
        device.memory.gtt.total_bytes,
    ) {
        (Some(vram), Some(gtt)) => vram > 0.0 && vram <= SMALL_CARVE_OUT && gtt >= 8.0 * vram,
        _ => false,
    }
}

/// The memory the core series report: carve-out plus GTT on an APU, VRAM on a dGPU. A sum is
/// only given when both parts are known, so a missing GTT read never shrinks the total to the
/// carve-out.
pub fn usable_memory(is_apu: bool, memory: &Memory) -> (Option<f64>, Option<f64>) {
    if !is_apu {
        return (memory.vram.total_bytes, memory.vram.used_bytes);
    }
    let sum = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
    (
        sum(memory.vram.total_bytes, memory.gtt.total_bytes),
        sum(memory.vram.used_bytes, memory.gtt.used_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pool;

    const MIB: f64 = 1024.0 * 1024.0;
    const GIB: f64 = 1024.0 * MIB;

    fn memory(vram: (f64, f64), gtt: (f64, f64)) -> Memory {
        Memory {
            vram: Pool {
                total_bytes: Some(vram.0),
                used_bytes: Some(vram.1),
            },
            gtt: Pool {
                total_bytes: Some(gtt.0),
                used_bytes: Some(gtt.1),
            },
            ..Default::default()
        }
    }

    #[test]
    fn apu_memory_is_carve_out_plus_gtt() {
        let m = memory((512.0 * MIB, 460.0 * MIB), (96.0 * GIB, 6.0 * GIB));
        let (total, used) = usable_memory(true, &m);
        assert_eq!(total, Some(512.0 * MIB + 96.0 * GIB));
        assert_eq!(used, Some(460.0 * MIB + 6.0 * GIB));
        // Never the 90 %-full carve-out alone.
        assert!(used.unwrap() / total.unwrap() < 0.1);
    }

    #[test]
    fn dgpu_memory_is_vram_only() {
        let m = memory((16.0 * GIB, 1.0 * GIB), (32.0 * GIB, 0.1 * GIB));
        assert_eq!(
            usable_memory(false, &m),
            (Some(16.0 * GIB), Some(1.0 * GIB))
        );
    }

    #[test]
    fn apu_sum_needs_both_parts() {
        let mut m = memory((512.0 * MIB, 460.0 * MIB), (96.0 * GIB, 6.0 * GIB));
        m.gtt.used_bytes = None;
        assert_eq!(usable_memory(true, &m).1, None);
    }

    #[test]
    fn apu_detection() {
        let strix = Device {
            device_id: Some("0x1586".into()),
            ..Default::default()
        };
        assert!(looks_like_apu(&strix));
        let unknown_with_vddnb = Device {
            device_id: Some("0x9999".into()),
            voltages: vec![("vddgfx".into(), 0.7), ("vddnb".into(), 0.6)],
            ..Default::default()
        };
        assert!(looks_like_apu(&unknown_with_vddnb));
        let small_carve_out = Device {
            memory: memory((512.0 * MIB, 0.0), (60.0 * GIB, 0.0)),
            ..Default::default()
        };
        assert!(looks_like_apu(&small_carve_out));
        let dgpu = Device {
            device_id: Some("0x744c".into()),
            memory: memory((20.0 * GIB, 0.0), (32.0 * GIB, 0.0)),
            voltages: vec![("vddgfx".into(), 0.9)],
            ..Default::default()
        };
        assert!(!looks_like_apu(&dgpu));
    }

    #[test]
    fn names() {
        assert_eq!(model_name("0x1586"), "Radeon 8060S Graphics (Strix Halo)");
        assert_eq!(model_name("0X744C"), "Radeon RX 7900 XT/XTX (Navi 31)");
        assert_eq!(model_name("0x1234"), "AMD GPU 0x1234");
        // The table wins over a backend's own name, so both backends agree where it knows one.
        assert_eq!(
            model(Some("0x744c"), Some("Radeon RX 7900 XTX")),
            "Radeon RX 7900 XT/XTX (Navi 31)"
        );
        assert_eq!(
            model(Some("0x7551"), Some("Radeon AI PRO R9700")),
            "Radeon AI PRO R9700"
        );
        assert_eq!(model(Some("0x7551"), None), "AMD GPU 0x7551");
        assert_eq!(model(None, Some("Phoenix3")), "Phoenix3");
        assert_eq!(model(None, None), "");
    }
}
