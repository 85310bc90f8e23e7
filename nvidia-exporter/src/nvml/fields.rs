//! Memory temperature, NVLink and PCIe byte counters and remapped rows: the field values read in
//! one `nvmlDeviceGetFieldValues` call, each with its own return code.

use super::calls::Calls;
use super::ffi::{field_u64, field_values};
use crate::snapshot::{GpuSample, NvLink, RemappedRows};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Device;

pub(super) const FIELD_MEMORY_TEMP: u32 = 82;
const FIELD_NVLINK_DATA_TX: u32 = 138;
const FIELD_NVLINK_DATA_RX: u32 = 139;
const FIELD_REMAPPED_COR: u32 = 142;
const FIELD_REMAPPED_UNC: u32 = 143;
const FIELD_REMAPPED_PENDING: u32 = 144;
const FIELD_REMAPPED_FAILURE: u32 = 145;
const FIELD_PCIE_TX_BYTES: u32 = 197;
const FIELD_PCIE_RX_BYTES: u32 = 198;
/// nvml.h: "A scopeId of UINT_MAX returns aggregate value summed up across all links".
const ALL_LINKS: u32 = u32::MAX;

/// The field values read in one `nvmlDeviceGetFieldValues` call: field id, scope, and the
/// name under which the field's own errors are counted and its lack of support remembered.
/// All ids are below 251, where nvml-wrapper's `FieldIdScheme` remaps nothing, so they are
/// passed to NVML as they are.
const FIELDS: [(u32, u32, &str); 9] = [
    (
        FIELD_MEMORY_TEMP,
        0,
        "nvmlDeviceGetFieldValues(MEMORY_TEMP)",
    ),
    (
        FIELD_NVLINK_DATA_TX,
        ALL_LINKS,
        "nvmlDeviceGetFieldValues(NVLINK_THROUGHPUT_DATA_TX)",
    ),
    (
        FIELD_NVLINK_DATA_RX,
        ALL_LINKS,
        "nvmlDeviceGetFieldValues(NVLINK_THROUGHPUT_DATA_RX)",
    ),
    (
        FIELD_REMAPPED_COR,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_COR)",
    ),
    (
        FIELD_REMAPPED_UNC,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_UNC)",
    ),
    (
        FIELD_REMAPPED_PENDING,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_PENDING)",
    ),
    (
        FIELD_REMAPPED_FAILURE,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_FAILURE)",
    ),
    (
        FIELD_PCIE_TX_BYTES,
        0,
        "nvmlDeviceGetFieldValues(PCIE_COUNT_TX_BYTES)",
    ),
    (
        FIELD_PCIE_RX_BYTES,
        0,
        "nvmlDeviceGetFieldValues(PCIE_COUNT_RX_BYTES)",
    ),
];

/// Memory temperature, NVLink and PCIe byte counters and remapped rows come from one
/// field-values call (the PCIe throughput call would block for 20 ms per direction). Each field
/// answers with its own return code: a field the GPU does not support is counted once and left
/// out of later calls, like an unsupported function; when none is left, no call is made.
pub(super) fn read_fields(calls: &mut Calls, device: &Device, gpu: &mut GpuSample) {
    let wanted: Vec<&(u32, u32, &'static str)> = FIELDS
        .iter()
        .filter(|(_, _, name)| !calls.is_unsupported(name))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let Some(values) = calls.call("nvmlDeviceGetFieldValues", || field_values(device, &wanted))
    else {
        return;
    };
    let mut remapped = RemappedRows::default();
    let (mut nvlink_tx, mut nvlink_rx) = (None, None);
    for (&&(id, _, name), raw) in wanted.iter().zip(&values) {
        let v = match field_u64(raw) {
            Ok(v) => v,
            Err(e) => {
                // The field id and scope never change, so a field NVML calls invalid stays so.
                let invalid = matches!(e, NvmlError::InvalidArg);
                calls.record(name, e);
                if invalid {
                    calls.mark_unsupported(name);
                }
                continue;
            }
        };
        match id {
            FIELD_MEMORY_TEMP => gpu.memory_temperature_celsius = Some(v),
            FIELD_NVLINK_DATA_TX => nvlink_tx = Some((v, raw.timestamp)),
            FIELD_NVLINK_DATA_RX => nvlink_rx = Some((v, raw.timestamp)),
            FIELD_REMAPPED_COR => remapped.correctable = Some(v),
            FIELD_REMAPPED_UNC => remapped.uncorrectable = Some(v),
            FIELD_REMAPPED_PENDING => remapped.pending = Some(v),
            FIELD_REMAPPED_FAILURE => remapped.failure = Some(v),
            FIELD_PCIE_TX_BYTES => gpu.pcie.transmit_bytes = Some(v),
            FIELD_PCIE_RX_BYTES => gpu.pcie.receive_bytes = Some(v),
            _ => {}
        }
    }
    gpu.remapped_rows = remapped;
    // DCGM needs both directions, and takes the later of the two timestamps.
    if let (Some((tx, tx_at)), Some((rx, rx_at))) = (nvlink_tx, nvlink_rx) {
        gpu.nvlink = Some(NvLink {
            transmit_kib: tx,
            receive_kib: rx,
            timestamp_us: tx_at.max(rx_at),
        });
    }
}
