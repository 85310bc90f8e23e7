//! The nvml.h structs and calls that nvml-wrapper 0.13 does not wrap: vGPU licensing, the
//! field values with a scope, and the v1 memory info of drivers older than R510. Every `unsafe`
//! of the NVML reader that is not about GPM handles is here, next to the layout it relies on.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Device;

/// The name under which the vGPU licensing call's errors are counted and its lack of support
/// remembered.
pub(super) const GRID_LICENSE: &str = "nvmlDeviceGetGridLicensableFeatures_v4";

/// What nvmlDeviceGetGridLicensableFeatures says about vGPU licensing.
pub(super) struct GridLicense {
    /// `isGridLicenseSupported`.
    pub(super) supported: bool,
    /// `featureState` of the vGPU feature (non-zero: licensed), if the GPU lists it.
    pub(super) vgpu_state: Option<u32>,
}

/// nvml.h's `nvmlGridLicenseExpiry_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GridLicenseExpiry {
    year: u32,
    month: u16,
    day: u16,
    hour: u16,
    min: u16,
    sec: u16,
    status: u8,
}

/// nvml.h's `nvmlGridLicensableFeature_t` (v4, with the expiry).
#[repr(C)]
#[derive(Clone, Copy)]
struct GridLicensableFeature {
    feature_code: i32,
    feature_state: u32,
    license_info: [std::ffi::c_char; 128],
    product_name: [std::ffi::c_char; 128],
    feature_enabled: u32,
    license_expiry: GridLicenseExpiry,
}

/// nvml.h's `nvmlGridLicensableFeatures_t` (NVML_GRID_LICENSE_FEATURE_MAX_COUNT = 3).
#[repr(C)]
struct GridLicensableFeatures {
    is_grid_license_supported: i32,
    licensable_features_count: u32,
    features: [GridLicensableFeature; 3],
}

const _: () = assert!(std::mem::size_of::<GridLicensableFeature>() == 284);
const _: () = assert!(std::mem::size_of::<GridLicensableFeatures>() == 860);

/// NVML_GRID_LICENSE_FEATURE_CODE_VGPU.
const GRID_FEATURE_VGPU: i32 = 1;

/// nvml-wrapper 0.13 does not wrap nvmlDeviceGetGridLicensableFeatures_v4 (the function
/// nvml.h's `nvmlDeviceGetGridLicensableFeatures` names, which DCGM calls).
pub(super) fn grid_license(device: &Device) -> Result<GridLicense, NvmlError> {
    let f = device
        .nvml()
        .lib()
        .nvmlDeviceGetGridLicensableFeatures_v4
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    // SAFETY: the struct is plain integers, for which all zero bits are a valid value.
    let mut raw: GridLicensableFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: a valid device handle and a struct with nvmlGridLicensableFeatures_t's layout.
    let code = unsafe {
        f(
            device.handle(),
            &mut raw as *mut GridLicensableFeatures as *mut _,
        )
    };
    if code != 0 {
        return Err(NvmlError::from(code));
    }
    let count = (raw.licensable_features_count as usize).min(raw.features.len());
    Ok(GridLicense {
        supported: raw.is_grid_license_supported != 0,
        vgpu_state: raw.features[..count]
            .iter()
            .find(|f| f.feature_code == GRID_FEATURE_VGPU)
            .map(|f| f.feature_state),
    })
}

/// nvml.h's `nvmlMemory_t`: three unsigned long longs.
#[repr(C)]
#[derive(Default)]
pub(super) struct MemoryV1 {
    pub(super) total: u64,
    pub(super) free: u64,
    pub(super) used: u64,
}

/// `nvmlDeviceGetMemoryInfo` (v1), which nvml-wrapper does not wrap: the only memory call of
/// drivers older than R510 (used then includes the reserved memory).
pub(super) fn memory_info_v1(device: &Device) -> Result<MemoryV1, NvmlError> {
    let f = device
        .nvml()
        .lib()
        .nvmlDeviceGetMemoryInfo
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut m = MemoryV1::default();
    // SAFETY: a valid device handle and a struct with nvmlMemory_t's layout.
    let code = unsafe { f(device.handle(), &mut m as *mut MemoryV1 as *mut _) };
    match code {
        0 => Ok(m),
        e => Err(NvmlError::from(e)),
    }
}

/// nvml.h's `nvmlValue_t`.
#[repr(C)]
#[derive(Clone, Copy)]
union RawValue {
    double: f64,
    unsigned_int: u32,
    /// C `unsigned long`: 64 bits on Linux (LP64), where NVML runs.
    unsigned_long: u64,
    unsigned_long_long: u64,
    signed_long_long: i64,
    signed_int: i32,
    unsigned_short: u16,
}

/// nvml.h's `nvmlFieldValue_t`. nvml-wrapper's `field_values_for` leaves `scopeId` at 0, and
/// the NVLink counters need `UINT_MAX` (all links), so the call is made here.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct RawFieldValue {
    field_id: u32,
    scope_id: u32,
    pub(super) timestamp: i64,
    latency_usec: i64,
    value_type: u32,
    nvml_return: u32,
    value: RawValue,
}

const _: () = assert!(std::mem::size_of::<RawFieldValue>() == 40);

pub(super) fn field_values(
    device: &Device,
    fields: &[&(u32, u32, &'static str)],
) -> Result<Vec<RawFieldValue>, NvmlError> {
    let f = device
        .nvml()
        .lib()
        .nvmlDeviceGetFieldValues
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut values: Vec<RawFieldValue> = fields
        .iter()
        .map(|&&(field_id, scope_id, _)| RawFieldValue {
            field_id,
            scope_id,
            timestamp: 0,
            latency_usec: 0,
            value_type: 0,
            nvml_return: 0,
            value: RawValue {
                unsigned_long_long: 0,
            },
        })
        .collect();
    // SAFETY: a valid device handle and `values.len()` structs with nvmlFieldValue_t's layout.
    let code = unsafe {
        f(
            device.handle(),
            values.len() as i32,
            values.as_mut_ptr() as *mut _,
        )
    };
    match code {
        0 => Ok(values),
        e => Err(NvmlError::from(e)),
    }
}

/// The field's value, or its own error. Negative values mean nothing for these fields.
pub(super) fn field_u64(raw: &RawFieldValue) -> Result<u64, NvmlError> {
    if raw.nvml_return != 0 {
        return Err(NvmlError::from(raw.nvml_return));
    }
    // SAFETY: `value_type` says which member NVML wrote; every member is plain data.
    let value = unsafe {
        match raw.value_type {
            0 => Some(raw.value.double)
                .filter(|v| *v >= 0.0)
                .map(|v| v as u64),
            1 => Some(u64::from(raw.value.unsigned_int)),
            2 => Some(raw.value.unsigned_long),
            3 => Some(raw.value.unsigned_long_long),
            4 => u64::try_from(raw.value.signed_long_long).ok(),
            5 => u64::try_from(raw.value.signed_int).ok(),
            6 => Some(u64::from(raw.value.unsigned_short)),
            other => return Err(NvmlError::UnexpectedVariant(other)),
        }
    };
    value.ok_or(NvmlError::UnexpectedVariant(raw.value_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::fields::FIELD_MEMORY_TEMP;

    #[test]
    fn a_field_value_carries_its_own_error_and_type() {
        let raw = |value_type: u32, nvml_return: u32, bits: u64| RawFieldValue {
            field_id: FIELD_MEMORY_TEMP,
            scope_id: 0,
            timestamp: 0,
            latency_usec: 0,
            value_type,
            nvml_return,
            value: RawValue {
                unsigned_long_long: bits,
            },
        };
        assert!(matches!(
            field_u64(&raw(3, 3, 7)),
            Err(NvmlError::NotSupported)
        ));
        assert!(matches!(field_u64(&raw(3, 15, 7)), Err(NvmlError::GpuLost)));
        assert_eq!(field_u64(&raw(3, 0, 1 << 40)).unwrap(), 1 << 40);
        assert_eq!(field_u64(&raw(0, 0, 68.5f64.to_bits())).unwrap(), 68);
        assert_eq!(field_u64(&raw(4, 0, 12)).unwrap(), 12);
        assert!(field_u64(&raw(4, 0, (-1i64) as u64)).is_err());
        assert!(matches!(
            field_u64(&raw(42, 0, 1)),
            Err(NvmlError::UnexpectedVariant(42))
        ));
    }
}
