//! The rocm-smi backend: runs `rocm-smi --json` with the flags we need and reads every version's
//! keys (ROCm 4.3 to 7.x).
//!
//! What varies between versions, all handled here: every value is a string (`"45.0"`,
//! `"(800Mhz)"`, `"N/A"`); keys can end in a colon (`"sclk clock speed:"`); the power key is
//! `Average Graphics Package Power (W)` or `Current Socket Graphics Package Power (W)`; product
//! keys changed case in 6.2 (`Card series` → `Card Series`); unsupported values are usually
//! just missing; stray non-JSON lines may surround the JSON. rocm-smi exits 0 even when the
//! driver is missing, so the exit code is no health signal: stderr and stdout are read instead.
//!
//! rocm-smi's `cardN` is its own index, not `/sys/class/drm/cardN`; devices are keyed by their
//! PCI address (`PCI Bus`, upper case in rocm-smi, lower case here and in sysfs).

use crate::apu;
use crate::child::{Output, RunError, Runner};
use crate::model::{normalize_unique_id, Backend, Device, Failure, Reason, Snapshot};
use common::gpu::normalize_pci_address;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::ffi::OsString;
use std::process::{Child, Command};
use std::time::Duration;

/// What we ask for. `--showmeminfo` takes several values, so it comes last. Never `-s`
/// (`--showclkfrq`): with `--json` it produces junk keys `"0"`, `"1"`... that overwrite each other.
pub const ARGS: &[&str] = &[
    "--json",
    "--showid",
    "--showproductname",
    "--showbus",
    "--showuniqueid",
    "--showuse",
    "--showtemp",
    "--showpower",
    "--showmaxpower",
    "--showclocks",
    "--showfan",
    "--showvoltage",
    "--showdriverversion",
    "--showmeminfo",
    "all",
];

pub struct RocmSmiBackend {
    path: String,
    runner: Runner,
    /// A killed rocm-smi that has not gone away (D state in the driver). While it exists no new
    /// one is started: a stuck child cannot be killed, and stacking more would only add to it.
    stuck: Option<Child>,
    /// Extra environment for the child (tests steer the fake rocm-smi this way rather than
    /// through the process environment, which other tests share).
    env: Vec<(OsString, OsString)>,
}

impl RocmSmiBackend {
    pub fn new(path: impl Into<String>, timeout: Duration) -> Self {
        Self::with_runner(path, Runner::new(timeout))
    }

    pub fn with_runner(path: impl Into<String>, runner: Runner) -> Self {
        RocmSmiBackend {
            path: path.into(),
            runner,
            stuck: None,
            env: Vec::new(),
        }
    }

    /// Sets a variable in rocm-smi's environment.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn still_stuck(&mut self) -> Option<u32> {
        let child = self.stuck.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child.id()),
            Ok(Some(_)) | Err(_) => {
                self.stuck = None;
                None
            }
        }
    }
}

impl Backend for RocmSmiBackend {
    fn name(&self) -> &'static str {
        super::Source::RocmSmi.name()
    }

    fn sample(&mut self) -> Result<Snapshot, Failure> {
        if let Some(pid) = self.still_stuck() {
            return Err(Failure::new(
                Reason::Stuck,
                format!("the rocm-smi killed earlier (pid {pid}) is still not gone, probably stuck in the driver; not starting another"),
            ));
        }
        let mut command = Command::new(&self.path);
        command
            .args(ARGS)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let result = self.runner.run(&mut command);
        match result {
            Err(RunError::Unreaped(child)) => {
                let pid = child.id();
                self.stuck = Some(child);
                Err(Failure::new(
                    Reason::Timeout,
                    format!(
                        "rocm-smi did not finish within {:?} and did not die when killed (pid {pid})",
                        self.runner.timeout
                    ),
                ))
            }
            other => interpret(&self.path, self.runner.timeout, other),
        }
    }
}

/// Turns one run of rocm-smi into a snapshot or a failure with its reason.
pub fn interpret(
    path: &str,
    timeout: Duration,
    result: Result<Output, RunError>,
) -> Result<Snapshot, Failure> {
    let out = match result {
        Ok(out) => out,
        Err(RunError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(
                Reason::NotFound,
                format!("rocm-smi not found at '{path}' (set --rocm-smi.path)"),
            ))
        }
        Err(RunError::Spawn(e)) => {
            return Err(Failure::new(
                Reason::SpawnFailed,
                format!("cannot run '{path}': {e}"),
            ))
        }
        Err(RunError::TimedOut | RunError::Unreaped(_)) => {
            return Err(Failure::new(
                Reason::Timeout,
                format!("rocm-smi did not finish within {timeout:?}; killed its process group"),
            ))
        }
    };
    let stderr_line = summary(&out.stderr);
    if out.status.code() == Some(127) {
        return Err(Failure::new(
            Reason::NotFound,
            format!("rocm-smi not found (exit 127): {stderr_line}"),
        ));
    }
    match find_json(&out.stdout) {
        Some(Ok(Value::Object(top))) => {
            let snapshot = parse(&top);
            if snapshot.devices.is_empty() {
                Err(Failure::new(
                    Reason::NoDevices,
                    "rocm-smi reported no GPU in its JSON",
                ))
            } else {
                Ok(snapshot)
            }
        }
        Some(Ok(_)) => Err(Failure::new(
            Reason::BadOutput,
            "rocm-smi printed JSON that is not an object",
        )),
        Some(Err(e)) => Err(Failure::new(
            Reason::BadOutput,
            format!(
                "rocm-smi printed invalid or truncated JSON{}: {e}",
                if out.truncated {
                    " (output over the size cap)"
                } else {
                    ""
                }
            ),
        )),
        None => Err(without_json(&out, &stderr_line)),
    }
}

/// Why a run printed no JSON, from what rocm-smi says (it exits 0 in most of these cases).
fn without_json(out: &Output, stderr_line: &str) -> Failure {
    let stderr = out.stderr.as_str();
    if out.stdout.contains("Unable to load the rocm_smi library") {
        return Failure::new(Reason::LibraryMissing, "rocm-smi cannot load librocm_smi64");
    }
    if [
        "Driver not initialized",
        "Driver not loaded",
        "amdgpu not found",
    ]
    .iter()
    .any(|m| stderr.contains(m))
    {
        return Failure::new(
            Reason::DriverNotLoaded,
            format!(
                "the amdgpu driver is not loaded: {}",
                matching_line(stderr, "Driver")
            ),
        );
    }
    if stderr.contains("No AMD GPUs") || stderr.contains("No JSON data to report") {
        return Failure::new(Reason::NoDevices, format!("rocm-smi: {stderr_line}"));
    }
    if !out.status.success() {
        let status = out
            .status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "a signal".into());
        return Failure::new(
            Reason::ExitStatus,
            format!("rocm-smi exited with {status}: {stderr_line}"),
        );
    }
    if out.stdout.trim().is_empty() {
        return Failure::new(Reason::BadOutput, "rocm-smi printed nothing");
    }
    Failure::new(
        Reason::BadOutput,
        format!("rocm-smi printed no JSON: {}", first_line(&out.stdout)),
    )
}

/// stderr on one line for the log: its non-empty lines joined, bounded.
fn summary(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" | ").chars().take(300).collect()
}

fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.unwrap_or("").chars().take(200).collect()
}

fn matching_line(text: &str, needle: &str) -> String {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect()
}

/// The first JSON value that starts a line; lines before it (warnings some versions print on
/// stdout) and anything after it are ignored. `None` when no line starts with `{`.
pub fn find_json(stdout: &str) -> Option<Result<Value, serde_json::Error>> {
    let mut first_error = None;
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        let start = offset + (line.len() - line.trim_start().len());
        offset += line.len();
        if !line.trim_start().starts_with('{') {
            continue;
        }
        let mut values = serde_json::Deserializer::from_str(&stdout[start..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(value)) => return Some(Ok(value)),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => {}
        }
    }
    first_error.map(Err)
}

/// Reads the top-level object: `cardN` entries and `system`.
pub fn parse(top: &Map<String, Value>) -> Snapshot {
    let mut devices = Vec::new();
    let mut driver_version = String::new();
    for (key, value) in top {
        let Value::Object(fields) = value else {
            continue;
        };
        if key == "system" {
            driver_version = Fields::new(fields)
                .text("driver version")
                .unwrap_or_default()
                .to_string();
            continue;
        }
        let Some(index) = key.strip_prefix("card").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        devices.push(parse_card(index, &Fields::new(fields)));
    }
    Snapshot::new(devices, driver_version)
}

/// A card's fields by normalised key: lower case, without the trailing colon some keys carry.
struct Fields(HashMap<String, String>);

impl Fields {
    fn new(map: &Map<String, Value>) -> Self {
        let normalised = map
            .iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.trim().to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                let key = k.trim().trim_end_matches(':').trim().to_ascii_lowercase();
                Some((key, value))
            })
            .collect();
        Fields(normalised)
    }

    /// A usable text value: present, not empty, not `N/A`.
    fn text(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty() && !v.starts_with("N/A"))
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.text(key)?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }

    /// A hex id such as `0x744c`, but not the vendor id that ROCm 4.3 printed everywhere.
    fn hex_id(&self, key: &str) -> Option<String> {
        let v = self.text(key)?.to_ascii_lowercase();
        (v.starts_with("0x") && v != "0x1002").then_some(v)
    }
}

fn parse_card(index: u32, f: &Fields) -> Device {
    // `Card Model` is the device id only with the 6.2+ product keys (which bring `GFX Version`);
    // before, it was the subsystem id (MI100: 0x0c34) or the vendor (4.3: 0x1002).
    let card_model_is_device_id = f.text("gfx version").is_some();
    let device_id = f
        .hex_id("device id")
        .or_else(|| f.hex_id("gpu id"))
        .or_else(|| {
            card_model_is_device_id
                .then(|| f.hex_id("card model"))
                .flatten()
        })
        .map(|id| format!("0x{:0>4}", id.trim_start_matches("0x")));
    let own_name = f
        .text("card series")
        .filter(|s| !s.starts_with("0x"))
        .or_else(|| f.text("device name"));
    let model = apu::model(device_id.as_deref(), own_name);
    let mut device = Device {
        id: f
            .text("pci bus")
            .map(normalize_pci_address)
            .unwrap_or_else(|| format!("rocm-smi:card{index}")),
        smi_index: Some(index),
        model,
        device_id,
        revision: f.text("device rev").map(str::to_string),
        unique_id: f.text("unique id").and_then(normalize_unique_id),
        gfx_version: f.text("gfx version").map(str::to_string),
        answered: true,
        busy_percent: f.number("gpu use (%)"),
        ..Default::default()
    };

    for (pool, name) in [
        (&mut device.memory.vram, "vram"),
        (&mut device.memory.vis_vram, "vis_vram"),
        (&mut device.memory.gtt, "gtt"),
    ] {
        pool.total_bytes = f.number(&format!("{name} total memory (b)"));
        pool.used_bytes = f.number(&format!("{name} total used memory (b)"));
    }

    let mut temperature_keys: Vec<&String> =
        f.0.keys()
            .filter(|k| k.starts_with("temperature (sensor "))
            .collect();
    temperature_keys.sort();
    for key in temperature_keys {
        let Some(sensor) = key
            .strip_prefix("temperature (sensor ")
            .and_then(|rest| rest.strip_suffix(") (c)"))
        else {
            continue;
        };
        let sensor = match sensor {
            "mem" => "memory".to_string(),
            other => other.replace(' ', ""),
        };
        if let Some(v) = f.number(key) {
            device.temperatures.push((sensor, v));
        }
    }

    // Both keys come from hwmon power1 (average, or input where power1_label is PPT); amdgpu
    // labels power1 `PPT`, so the sensor label matches what the sysfs backend reports.
    device.power_average_watts = f.number("average graphics package power (w)");
    device.power_input_watts = f.number("current socket graphics package power (w)");
    device.power_sensor = "PPT".into();
    device.power_cap_watts = f.number("max graphics package power (w)");

    for clock in ["sclk", "mclk", "fclk", "socclk", "dcefclk"] {
        if let Some(hz) = f.text(&format!("{clock} clock speed")).and_then(mhz) {
            device.clocks_hz.push((clock.to_string(), hz));
        }
    }
    if let Some(level) = f.text("pcie clock level") {
        device.pcie.speed_transfers_per_second = gts(level);
        device.pcie.width = lanes(level);
    }
    device.fan_rpm = f.number("fan rpm");
    device.fan_pwm_ratio = f
        .number("fan speed (%)")
        .map(|p| (p / 100.0).clamp(0.0, 1.0));
    if let Some(mv) = f.number("voltage (mv)") {
        device.voltages.push(("vddgfx".into(), mv / 1000.0));
    }
    device.is_apu = apu::looks_like_apu(&device);
    device
}

/// The number just before `Mhz` (`(800Mhz)`, `0 (500Mhz)`), in Hz.
fn mhz(text: &str) -> Option<f64> {
    number_before(text, "mhz").map(|v| v * 1e6)
}

/// `1 (16.0GT/s x16)` → 16e9 transfers per second.
fn gts(text: &str) -> Option<f64> {
    number_before(text, "gt/s").map(|v| v * 1e9)
}

/// `1 (16.0GT/s x16)` → 16 lanes.
fn lanes(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let after = &lower[lower.rfind(" x")? + 2..];
    let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn number_before(text: &str, unit: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let before = &lower[..lower.find(unit)?];
    let trimmed = before.trim_end();
    // Start after the last other char, by its own length: it can be multi-byte ("\u{FFFD}").
    let start = trimmed
        .char_indices()
        .rfind(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    trimmed[start..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/rocm-smi")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn run(stdout: &str, stderr: &str, code: i32) -> Result<Snapshot, Failure> {
        interpret(
            "rocm-smi",
            Duration::from_secs(5),
            Ok(Output {
                status: ExitStatus::from_raw(code << 8),
                stdout: stdout.into(),
                stderr: stderr.into(),
                truncated: false,
            }),
        )
    }

    fn reason(stdout: &str, stderr: &str, code: i32) -> Reason {
        run(stdout, stderr, code).unwrap_err().reason
    }

    #[test]
    fn rocm_4_3_vendor_ids_are_not_models() {
        let s = run(&fixture("rx6700xt-rocm-4.3.0.json"), "", 0).unwrap();
        let d = &s.devices[0];
        assert_eq!(d.device_id.as_deref(), Some("0x73df"));
        assert_eq!(d.model, "Radeon RX 6700/6700 XT (Navi 22)");
        // "N/A" HBM temperatures are skipped.
        assert_eq!(d.temperatures.len(), 3);
    }

    #[test]
    fn rocm_5_7_average_power_and_colon_keys() {
        let s = run(&fixture("mi100-rocm-5.7.1.json"), "", 0).unwrap();
        assert_eq!(s.devices.len(), 2);
        let d = &s.devices[0];
        assert_eq!(d.id, "0000:1e:00.0");
        assert_eq!(d.model, "Instinct MI100");
        assert_eq!(d.unique_id, None, "N/A is no id");
        assert_eq!(d.power_average_watts, Some(39.0));
        assert_eq!(d.power_input_watts, None);
        assert!(d.clocks_hz.contains(&("sclk".to_string(), 300e6)));
        assert!(d.clocks_hz.contains(&("mclk".to_string(), 1200e6)));
        assert_eq!(d.pcie.speed_transfers_per_second, Some(8e9));
        assert_eq!(d.pcie.width, Some(16.0));
        assert_eq!(d.voltages, vec![("vddgfx".to_string(), 0.662)]);
        assert!(!d.is_apu);
    }

    #[test]
    fn rocm_6_2_product_keys_and_socket_power_on_an_apu() {
        let s = run(&fixture("radeon-780m-rocm-6.2.4.json"), "", 0).unwrap();
        let d = &s.devices[0];
        assert_eq!(d.id, "0000:c4:00.0");
        assert_eq!(d.power_input_watts, Some(7.222));
        assert_eq!(d.power_sensor, "PPT");
        assert!(d.is_apu);
    }

    #[test]
    fn unique_ids_in_the_sysfs_form() {
        let s = run(&fixture("mi100-rocm-6.0.2.json"), "", 0).unwrap();
        assert_eq!(s.devices[0].unique_id.as_deref(), Some("79ccd55167a2124a"));
        // "0x2150e7d042a1124": rocm-smi drops the leading zero sysfs keeps.
        let s = run(&fixture("vega10xt-rocm-5.x.json"), "", 0).unwrap();
        assert_eq!(s.devices[0].unique_id.as_deref(), Some("02150e7d042a1124"));
    }

    #[test]
    fn stray_lines_around_the_json_are_ignored() {
        let json = fixture("rx7900xt-rocm-6.x.json");
        let noisy =
            format!("WARNING: AMD GPU device(s) is/are in a low-power state\n{json}\nEnd of log\n");
        assert_eq!(run(&noisy, "", 0).unwrap().devices.len(), 1);
    }

    #[test]
    fn failures_have_reasons() {
        assert_eq!(reason("", "", 127), Reason::NotFound);
        assert_eq!(
            reason(
                "",
                "cat: /sys/module/amdgpu/initstate: No such file or directory\nERROR:root:Driver not initialized (amdgpu not found in modules)\n",
                0
            ),
            Reason::DriverNotLoaded
        );
        assert_eq!(
            reason("", "WARNING: No JSON data to report\n", 0),
            Reason::NoDevices
        );
        assert_eq!(reason("{}\n", "", 0), Reason::NoDevices);
        assert_eq!(
            reason("Unable to load the rocm_smi library.\n", "", 0),
            Reason::LibraryMissing
        );
        assert_eq!(
            reason(
                "",
                "ERROR:root:ROCm SMI returned 8 (the expected value is 0)\n",
                8
            ),
            Reason::ExitStatus
        );
        assert_eq!(reason("@@@ \u{1}garbage\n", "", 0), Reason::BadOutput);
        assert_eq!(reason("", "", 0), Reason::BadOutput);
        assert_eq!(
            reason("{\"card0\": {\"GPU use (%)\": \"1", "", 0),
            Reason::BadOutput
        );
        assert_eq!(reason("[1, 2]\n", "", 0), Reason::BadOutput);
        let timeout = interpret("rocm-smi", Duration::from_secs(1), Err(RunError::TimedOut));
        assert_eq!(timeout.unwrap_err().reason, Reason::Timeout);
    }

    #[test]
    fn value_parsers() {
        assert_eq!(mhz("(800Mhz)"), Some(800e6));
        assert_eq!(mhz("0 (500Mhz)"), Some(500e6));
        assert_eq!(mhz("N/A"), None);
        assert_eq!(gts("1 (16.0GT/s x16)"), Some(16e9));
        assert_eq!(lanes("1 (16.0GT/s x16)"), Some(16.0));
        assert_eq!(lanes("garbage"), None);
    }

    #[test]
    fn a_multi_byte_char_before_the_number_does_not_panic() {
        assert_eq!(mhz("\u{FFFD}800Mhz"), Some(800e6));
        assert_eq!(mhz("(é1200Mhz)"), Some(1200e6));
        assert_eq!(gts("1 (\u{FFFD}16.0GT/s \u{FFFD}x16)"), Some(16e9));
        assert_eq!(mhz("\u{FFFD}Mhz"), None);
        assert_eq!(lanes("16GT/s x\u{FFFD}"), None);
    }

    #[test]
    fn one_device_per_pci_address() {
        let top: Value = serde_json::from_str(
            r#"{"card1": {"PCI Bus": "0000:83:00.0", "GPU use (%)": "7"},
                "card0": {"PCI Bus": "0000:83:00.0", "GPU use (%)": "5"},
                "card2": {"PCI Bus": "0000:03:00.0", "GPU use (%)": "1"}}"#,
        )
        .unwrap();
        let s = parse(top.as_object().unwrap());
        let ids: Vec<(&str, Option<u32>)> = s
            .devices
            .iter()
            .map(|d| (d.id.as_str(), d.smi_index))
            .collect();
        assert_eq!(ids, [("0000:03:00.0", Some(2)), ("0000:83:00.0", Some(0))]);
        assert_eq!(s.devices[1].busy_percent, Some(5.0));
    }

    #[test]
    fn missing_bus_and_secondary_die_values() {
        let top: Value = serde_json::from_str(
            r#"{"card3": {"Average Graphics Package Power (W)": "N/A (Secondary die)", "GPU use (%)": 5}}"#,
        )
        .unwrap();
        let s = parse(top.as_object().unwrap());
        let d = &s.devices[0];
        assert_eq!(d.id, "rocm-smi:card3");
        assert_eq!(d.power_average_watts, None);
        assert_eq!(d.busy_percent, Some(5.0));
    }

    #[test]
    fn a_child_stuck_after_the_kill_blocks_new_runs_until_it_is_gone() {
        fn ignore(_: u32) {}
        let dir = std::env::temp_dir().join(format!("rocm-smi-stuck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let mode = dir.join("mode");
        std::fs::write(&mode, "hang").unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        // A kill that does nothing plays a child stuck in D state.
        let runner = Runner {
            kill_grace: Duration::from_millis(100),
            kill_group: ignore,
            ..Runner::new(Duration::from_millis(200))
        };
        // Only the child gets these: set_var would race with tests running meanwhile.
        let mut backend =
            RocmSmiBackend::with_runner(fixtures.join("fake-rocm-smi").to_string_lossy(), runner)
                .with_env("FAKE_ROCM_SMI_LOG", &log)
                .with_env("FAKE_ROCM_SMI_MODE_FILE", &mode)
                .with_env(
                    "FAKE_ROCM_SMI_FIXTURE",
                    fixtures.join("rocm-smi/radeon-780m-rocm-6.2.4.json"),
                );
        assert_eq!(backend.sample().unwrap_err().reason, Reason::Timeout);
        assert_eq!(backend.sample().unwrap_err().reason, Reason::Stuck);
        assert_eq!(backend.sample().unwrap_err().reason, Reason::Stuck);
        let runs = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            runs.lines().count(),
            1,
            "a second rocm-smi was started: {runs}"
        );
        assert!(runs.contains("--json") && runs.contains("--showmeminfo all"));

        // Once the stuck child is gone, rocm-smi runs again.
        let pid: u32 = runs.split_whitespace().next().unwrap().parse().unwrap();
        std::fs::write(&mode, "normal").unwrap();
        crate::child::kill_process_group(pid);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let result = loop {
            match backend.sample() {
                Err(f) if f.reason == Reason::Stuck && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => break other,
            }
        };
        assert_eq!(result.unwrap().devices.len(), 1);
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
