//! The dmi collector: `node_dmi_info`, labelled by the DMI identity attributes the firmware
//! provides in /sys/class/dmi/id. They do not change until reboot, so they are read once, on
//! the first scrape; attributes that are absent or unreadable (the serials are root-only) are
//! left out of the label set, as node_exporter does.

use crate::paths::{if_present, read_sysfs_value, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::PathBuf;
use std::sync::OnceLock;

const ATTRIBUTES: [&str; 20] = [
    "bios_date",
    "bios_release",
    "bios_vendor",
    "bios_version",
    "board_asset_tag",
    "board_name",
    "board_serial",
    "board_vendor",
    "board_version",
    "chassis_asset_tag",
    "chassis_serial",
    "chassis_vendor",
    "chassis_version",
    "product_family",
    "product_name",
    "product_serial",
    "product_sku",
    "product_uuid",
    "product_version",
    "sys_vendor",
];

pub struct Dmi {
    dir: PathBuf,
    labels: OnceLock<Vec<(&'static str, String)>>,
}

impl Dmi {
    pub fn new(paths: &Paths) -> Self {
        Dmi {
            dir: paths.sys("class/dmi/id"),
            labels: OnceLock::new(),
        }
    }

    fn read_labels(&self) -> Vec<(&'static str, String)> {
        let mut labels = Vec::new();
        for attribute in ATTRIBUTES {
            let path = self.dir.join(attribute);
            match if_present(read_sysfs_value(&path)) {
                // node_exporter names the sys_vendor file system_vendor.
                Ok(Some(value)) => labels.push((
                    if attribute == "sys_vendor" {
                        "system_vendor"
                    } else {
                        attribute
                    },
                    value,
                )),
                Ok(None) => {}
                Err(e) => log::debug(
                    "skipping unreadable DMI attribute",
                    &[
                        ("path", &path.display().to_string()),
                        ("err", &e.to_string()),
                    ],
                ),
            }
        }
        labels
    }
}

impl BlockingCollector for Dmi {
    fn collect(&self) -> CollectResult {
        let labels = self.labels.get_or_init(|| self.read_labels());
        if labels.is_empty() {
            // No DMI (ARM boards, some VMs): nothing to report.
            return Ok(vec![]);
        }
        Ok(vec![MetricFamily::gauge(
            "node_dmi_info",
            "A metric with a constant '1' value labeled by bios_date, bios_release, bios_vendor, bios_version, board_asset_tag, board_name, board_serial, board_vendor, board_version, chassis_asset_tag, chassis_serial, chassis_vendor, chassis_version, product_family, product_name, product_serial, product_sku, product_uuid, product_version, system_vendor if provided by DMI.",
        )
        .with(labels, 1.0)])
    }
}
