//! Flags in node_exporter's style, the same settings from a TOML file (`--config.file`) and from
//! environment variables. Precedence: command line, then environment, then file, then default.
//!
//! Every setting has one key, the long flag name (`web.listen-address`). The environment
//! variable is the exporter's prefix plus the key in upper case with `.` and `-` as `_`
//! (`HOST_EXPORTER_WEB_LISTEN_ADDRESS`); in the TOML file the key may be written dotted or as
//! tables (`[web] listen-address = [":10470"]`). Collectors are switched with
//! `--collector.<name>` / `--no-collector.<name>`, `<PREFIX>_COLLECTOR_<NAME>=true|false`, or
//! `collector.<name> = false` (also `[collector.<name>] enabled = false`) in the file.

use crate::collector::AnyCollector;
use crate::log::{Level, LogFormat};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// What one exporter binary is: its names, port and collectors. `C` is the exporter's context:
/// what its `run` call builds from the settings once and every collector's constructor reads.
pub struct ExporterSpec<C: 'static = ()> {
    /// Binary name, e.g. `host-exporter`.
    pub name: &'static str,
    /// Prefix of its own metrics and environment variables, e.g. `host_exporter`.
    pub metric_prefix: &'static str,
    /// Prefix of the per-collector health series: `<prefix>_collector_success` and
    /// `<prefix>_collector_duration_seconds`. host-exporter uses node_exporter's `node_scrape`,
    /// which the dashboards and alerts people already have query; the others their own prefix.
    pub collector_metrics_prefix: &'static str,
    pub about: &'static str,
    pub default_port: u16,
    /// Every collector, in the order they run and report their health series.
    pub collectors: &'static [CollectorSpec<C>],
}

/// One collector, registered as node_exporter registers its own
/// (`registerCollector("cpu", defaultEnabled, NewCPUCollector)`): the spec is the only place
/// its name is written. Flags, `collect[]`, the `collector` label of the health series and the
/// runner's entry all take it from here; the collector types do not know their name.
pub struct CollectorSpec<C: 'static = ()> {
    pub name: &'static str,
    pub default_enabled: bool,
    /// One line for `--help`.
    pub help: &'static str,
    /// Builds the collector from the exporter's context; called only when it is enabled.
    pub new: fn(&C) -> AnyCollector,
}

/// Which collectors are switched on, for an exporter whose context depends on it (the NVML
/// worker reads processes only when `processes` is on).
pub struct Enabled<'a> {
    known: Vec<&'static str>,
    on: &'a [&'static str],
}

impl<'a> Enabled<'a> {
    pub fn new<C>(spec: &ExporterSpec<C>, on: &'a [&'static str]) -> Self {
        Enabled {
            known: spec.collectors.iter().map(|c| c.name).collect(),
            on,
        }
    }

    /// Whether the collector `name` is on. A name the spec does not have is a bug in the
    /// exporter (a typo would read as "off"): debug builds, and so the tests, panic on it.
    pub fn contains(&self, name: &str) -> bool {
        debug_assert!(
            self.known.contains(&name),
            "no collector named {name:?} in the spec"
        );
        self.on.contains(&name)
    }
}

/// The spec's collector names are unique and usable in a flag and a label value: a name
/// listed twice would make clap fail on a duplicate flag and the runner drop the second one.
pub fn check_collector_names<C>(spec: &ExporterSpec<C>) -> Result<(), String> {
    for (index, collector) in spec.collectors.iter().enumerate() {
        let name = collector.name;
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(format!(
                "{}: collector name {name:?} is not lower-case letters, digits and '_'",
                spec.name
            ));
        }
        if spec.collectors[..index].iter().any(|c| c.name == name) {
            return Err(format!("{}: collector {name:?} is listed twice", spec.name));
        }
    }
    Ok(())
}

/// The settings every exporter shares, resolved and checked.
#[derive(Clone, Debug)]
pub struct CommonOptions {
    pub listen_addresses: Vec<String>,
    pub telemetry_path: String,
    pub web_config_file: Option<PathBuf>,
    pub max_requests: usize,
    pub scrape_timeout: Duration,
    pub disable_exporter_metrics: bool,
    pub log_level: Level,
    pub log_format: LogFormat,
    /// Enabled collectors, in the order of the spec.
    pub collectors: Vec<&'static str>,
}

/// A start-up configuration error; its message names the setting and where it came from.
#[derive(Debug)]
pub enum CliOutcome {
    /// `--help` or `--version`: print this on stdout and exit 0.
    Exit(String),
    Error(String),
}

/// Resolved access to every setting, including the exporter's own.
pub struct Settings {
    matches: ArgMatches,
    file: BTreeMap<String, toml::Value>,
    file_path: Option<PathBuf>,
    env_prefix: String,
}

/// Builds the full command line (shared flags, collector toggles, the exporter's own flags),
/// parses `args`, reads the config file, and resolves the shared options.
pub fn parse<C, I, T>(
    spec: &ExporterSpec<C>,
    version: &str,
    own_args: Vec<Arg>,
    args: I,
) -> Result<(CommonOptions, Settings), CliOutcome>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    check_collector_names(spec).map_err(CliOutcome::Error)?;
    let env_prefix = spec.metric_prefix.to_ascii_uppercase();
    let command = build_command(spec, version, own_args, &env_prefix);
    let matches = command
        .try_get_matches_from(args)
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                CliOutcome::Exit(e.to_string())
            }
            _ => CliOutcome::Error(e.to_string()),
        })?;

    let file_path = matches.get_one::<String>("config.file").map(PathBuf::from);
    let file = match &file_path {
        Some(path) => load_file(path, &matches, spec)?,
        None => BTreeMap::new(),
    };
    let settings = Settings {
        matches,
        file,
        file_path,
        env_prefix,
    };
    let options = settings.common_options(spec)?;
    Ok((options, settings))
}

fn build_command<C>(
    spec: &ExporterSpec<C>,
    version: &str,
    own_args: Vec<Arg>,
    env_prefix: &str,
) -> Command {
    let listen_default = format!(":{}", spec.default_port);
    let mut command = Command::new(spec.name)
        .about(spec.about)
        .version(version.to_string())
        .arg(
            Arg::new("config.file")
                .long("config.file")
                .help("TOML file with any of these settings (flags and environment win)"),
        )
        .arg(
            Arg::new("web.listen-address")
                .long("web.listen-address")
                .action(ArgAction::Append)
                .value_delimiter(',')
                .default_value(listen_default)
                .help("Address to listen on, host:port or :port; repeatable"),
        )
        .arg(
            Arg::new("web.telemetry-path")
                .long("web.telemetry-path")
                .default_value("/metrics")
                .help("Path under which to expose metrics"),
        )
        .arg(
            Arg::new("web.config.file")
                .long("web.config.file")
                .help("Exporter-toolkit web config (YAML) with TLS and basic auth"),
        )
        .arg(
            Arg::new("web.max-requests")
                .long("web.max-requests")
                .default_value("40")
                .help("Maximum concurrent scrapes; more get 503 (0 = no limit)"),
        )
        .arg(
            Arg::new("web.disable-exporter-metrics")
                .long("web.disable-exporter-metrics")
                .action(ArgAction::SetTrue)
                .help("Leave out the exporter's own process_* and build_info series"),
        )
        .arg(
            Arg::new("scrape.timeout")
                .long("scrape.timeout")
                .default_value("9s")
                .help("Deadline for each collector in a scrape (shortened to fit Prometheus' own scrape timeout)"),
        )
        .arg(
            Arg::new("log.level")
                .long("log.level")
                .default_value("info")
                .help("Only log messages at or above this level: debug, info, warn, error"),
        )
        .arg(
            Arg::new("log.format")
                .long("log.format")
                .default_value("logfmt")
                .help("Log line format: logfmt or json"),
        )
        .arg(
            Arg::new("collector.disable-defaults")
                .long("collector.disable-defaults")
                .action(ArgAction::SetTrue)
                .help("Turn off all collectors unless explicitly enabled"),
        )
        .args(own_args);

    // Every setting above and the exporter's own can also come from the environment.
    command = command.mut_args(|arg| {
        let long = arg.get_long().map(str::to_string);
        match long {
            Some(long) => arg.env(env_name(env_prefix, &long)),
            None => arg,
        }
    });

    for collector in spec.collectors {
        let default = if collector.default_enabled {
            "enabled"
        } else {
            "disabled"
        };
        command = command
            .arg(
                Arg::new(format!("collector.{}", collector.name))
                    .long(format!("collector.{}", collector.name))
                    .action(ArgAction::SetTrue)
                    .help(format!(
                        "Enable the {} collector: {} (default: {default})",
                        collector.name, collector.help
                    )),
            )
            .arg(
                Arg::new(format!("no-collector.{}", collector.name))
                    .long(format!("no-collector.{}", collector.name))
                    .action(ArgAction::SetTrue)
                    .hide(true),
            );
    }
    command
}

pub fn env_name(prefix: &str, key: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + key.len() + 1);
    name.push_str(prefix);
    name.push('_');
    for c in key.chars() {
        name.push(match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        });
    }
    name
}

/// Reads the TOML file and flattens it into dotted keys, rejecting keys that are no setting.
fn load_file<C>(
    path: &PathBuf,
    matches: &ArgMatches,
    spec: &ExporterSpec<C>,
) -> Result<BTreeMap<String, toml::Value>, CliOutcome> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliOutcome::Error(format!("cannot read --config.file {}: {e}", path.display()))
    })?;
    let table: toml::Table = text.parse().map_err(|e| {
        CliOutcome::Error(format!(
            "--config.file {}: not valid TOML: {e}",
            path.display()
        ))
    })?;
    let mut flat = BTreeMap::new();
    flatten("", toml::Value::Table(table), &mut flat);

    let known: Vec<&str> = matches.ids().map(|id| id.as_str()).collect();
    for key in flat.keys() {
        let is_collector_toggle = key
            .strip_prefix("collector.")
            .map(|rest| rest.strip_suffix(".enabled").unwrap_or(rest))
            .is_some_and(|name| spec.collectors.iter().any(|c| c.name == name));
        let is_setting = known.contains(&key.as_str())
            && key != "config.file"
            && !key.starts_with("no-collector.");
        if !is_collector_toggle && !is_setting {
            return Err(CliOutcome::Error(format!(
                "--config.file {}: unknown setting '{key}'",
                path.display()
            )));
        }
    }
    Ok(flat)
}

fn flatten(prefix: &str, value: toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let full = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&full, value, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other);
        }
    }
}

fn toml_scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Go-style durations as node_exporter takes them: `500ms`, `5s`, `1m`, `1h`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{s}' lacks a unit (ms, s, m, h)"))?;
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("'{s}' is not a duration"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("'{s}' has an unknown unit '{other}'")),
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    // A year is more than any timeout or interval here needs, and far from the values where
    // adding the duration to an Instant would overflow (and panic).
    if total > MAX_DURATION.as_secs_f64() {
        return Err(format!("'{s}' is too long a duration (a year at most)"));
    }
    Ok(Duration::from_secs_f64(total))
}

impl Settings {
    fn source_note(&self, key: &str) -> String {
        match self.matches.value_source(key) {
            Some(ValueSource::CommandLine) => String::new(),
            Some(ValueSource::EnvVariable) => {
                format!(" (from ${})", env_name(&self.env_prefix, key))
            }
            _ if self.file.contains_key(key) => match &self.file_path {
                Some(p) => format!(" (from {})", p.display()),
                None => String::new(),
            },
            _ => " (default)".into(),
        }
    }

    fn explicit(&self, key: &str) -> bool {
        matches!(
            self.matches.value_source(key),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    }

    /// Whether the setting was given at all (flag, environment or file), not left at its default.
    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit(key) || self.file.contains_key(key)
    }

    /// One value: flag, environment, file, or the flag's default.
    pub fn value(&self, key: &str) -> Result<Option<String>, CliOutcome> {
        if !self.explicit(key) {
            if let Some(v) = self.file.get(key) {
                return toml_scalar(v)
                    .map(Some)
                    .ok_or_else(|| self.invalid(key, &v.to_string(), "expected a single value"));
            }
        }
        Ok(self.matches.get_one::<String>(key).cloned())
    }

    /// All values of a repeatable setting.
    pub fn values(&self, key: &str) -> Result<Vec<String>, CliOutcome> {
        if !self.explicit(key) {
            if let Some(v) = self.file.get(key) {
                return match v {
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            toml_scalar(i).ok_or_else(|| {
                                self.invalid(key, &i.to_string(), "expected strings")
                            })
                        })
                        .collect(),
                    other => toml_scalar(other)
                        .map(|s| vec![s])
                        .ok_or_else(|| self.invalid(key, &other.to_string(), "expected a list")),
                };
            }
        }
        Ok(self
            .matches
            .get_many::<String>(key)
            .map(|v| v.cloned().collect())
            .unwrap_or_default())
    }

    /// A setting the file gives as an array of tables (`[[key]]`), each table as its keys and
    /// scalar values; `None` when the file does not give `key` that way, or when a flag or the
    /// environment sets `key` (they win over the file, as for every setting).
    pub fn tables(&self, key: &str) -> Result<Option<Vec<BTreeMap<String, String>>>, CliOutcome> {
        if self.explicit(key) {
            return Ok(None);
        }
        let Some(toml::Value::Array(items)) = self.file.get(key) else {
            return Ok(None);
        };
        if !items.iter().any(|i| i.is_table()) {
            return Ok(None);
        }
        items
            .iter()
            .map(|item| {
                let table = item.as_table().ok_or_else(|| {
                    self.invalid(key, &item.to_string(), "expected [[tables]] only")
                })?;
                table
                    .iter()
                    .map(|(k, v)| {
                        toml_scalar(v).map(|s| (k.clone(), s)).ok_or_else(|| {
                            self.invalid(
                                key,
                                &v.to_string(),
                                &format!("'{k}' takes a single value"),
                            )
                        })
                    })
                    .collect()
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A boolean switch.
    pub fn flag(&self, key: &str) -> Result<bool, CliOutcome> {
        if !self.explicit(key) {
            if let Some(v) = self.file.get(key) {
                return match v {
                    toml::Value::Boolean(b) => Ok(*b),
                    other => Err(self.invalid(key, &other.to_string(), "expected true or false")),
                };
            }
        }
        Ok(self.matches.get_flag(key))
    }

    /// A value parsed by `parse`; a bad one is an error naming the setting and its source.
    pub fn parsed<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, CliOutcome> {
        match self.value(key)? {
            None => Ok(None),
            Some(raw) => parse(&raw)
                .map(Some)
                .map_err(|e| self.invalid(key, &raw, &e)),
        }
    }

    pub fn invalid(&self, key: &str, raw: &str, why: &str) -> CliOutcome {
        CliOutcome::Error(format!(
            "invalid value '{raw}' for --{key}{}: {why}",
            self.source_note(key)
        ))
    }

    fn collector_enabled<C>(
        &self,
        collector: &CollectorSpec<C>,
        disable_defaults: bool,
    ) -> Result<bool, CliOutcome> {
        let on = format!("collector.{}", collector.name);
        let off = format!("no-collector.{}", collector.name);
        let last_index = |id: &str| {
            if self.matches.value_source(id) == Some(ValueSource::CommandLine) {
                self.matches.indices_of(id).and_then(|mut i| i.next_back())
            } else {
                None
            }
        };
        match (last_index(&on), last_index(&off)) {
            (Some(a), Some(b)) => return Ok(a > b),
            (Some(_), None) => return Ok(true),
            (None, Some(_)) => return Ok(false),
            (None, None) => {}
        }
        let env = env_name(&self.env_prefix, &on);
        if let Ok(raw) = std::env::var(&env) {
            return parse_bool(&raw).ok_or_else(|| {
                CliOutcome::Error(format!(
                    "invalid value '{raw}' for ${env}: expected true or false"
                ))
            });
        }
        for key in [on.clone(), format!("{on}.enabled")] {
            if let Some(v) = self.file.get(&key) {
                return match v {
                    toml::Value::Boolean(b) => Ok(*b),
                    other => Err(CliOutcome::Error(format!(
                        "invalid value '{other}' for '{key}' in {}: expected true or false",
                        self.file_path
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ))),
                };
            }
        }
        Ok(collector.default_enabled && !disable_defaults)
    }

    fn common_options<C>(&self, spec: &ExporterSpec<C>) -> Result<CommonOptions, CliOutcome> {
        let listen_addresses = self.values("web.listen-address")?;
        for address in &listen_addresses {
            crate::server::parse_listen_address(address)
                .map_err(|e| self.invalid("web.listen-address", address, &e))?;
        }
        let telemetry_path = self.value("web.telemetry-path")?.unwrap_or_default();
        if !telemetry_path.starts_with('/') {
            return Err(self.invalid("web.telemetry-path", &telemetry_path, "must start with /"));
        }
        let log_level = self
            .parsed("log.level", |s| {
                Level::parse(s).ok_or_else(|| "expected debug, info, warn or error".into())
            })?
            .unwrap_or(Level::Info);
        let log_format = self
            .parsed("log.format", |s| match s {
                "logfmt" => Ok(LogFormat::Logfmt),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected logfmt or json".into()),
            })?
            .unwrap_or(LogFormat::Logfmt);
        let max_requests = self
            .parsed("web.max-requests", |s| {
                s.parse::<usize>()
                    .map_err(|_| "expected a whole number".into())
            })?
            .unwrap_or(40);
        let scrape_timeout = self
            .parsed("scrape.timeout", |s| {
                let d = parse_duration(s)?;
                if d.is_zero() {
                    Err("must be above zero".into())
                } else {
                    Ok(d)
                }
            })?
            .unwrap_or(Duration::from_secs(9));
        let web_config_file = self.value("web.config.file")?.map(PathBuf::from);
        let disable_defaults = self.flag("collector.disable-defaults")?;
        let mut collectors = Vec::new();
        for collector in spec.collectors {
            if self.collector_enabled(collector, disable_defaults)? {
                collectors.push(collector.name);
            }
        }
        Ok(CommonOptions {
            listen_addresses,
            telemetry_path,
            web_config_file,
            max_requests,
            scrape_timeout,
            disable_exporter_metrics: self.flag("web.disable-exporter-metrics")?,
            log_level,
            log_format,
            collectors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ExporterSpec = ExporterSpec {
        name: "demo-exporter",
        metric_prefix: "demo_exporter",
        collector_metrics_prefix: "demo_exporter",
        about: "Demo",
        default_port: 10999,
        collectors: &[
            CollectorSpec {
                name: "cpu",
                default_enabled: true,
                help: "CPU",
                new: |_| AnyCollector::blocking(Nothing),
            },
            CollectorSpec {
                name: "slow",
                default_enabled: false,
                help: "Slow",
                new: |_| AnyCollector::blocking(Nothing),
            },
        ],
    };

    /// Flags are all these tests look at; the collectors are never run.
    struct Nothing;
    impl crate::BlockingCollector for Nothing {
        fn collect(&self) -> crate::CollectResult {
            Ok(vec![])
        }
    }

    #[test]
    fn a_collector_listed_twice_or_with_an_unusable_name_stops_the_start() {
        fn spec_of(collectors: &'static [CollectorSpec]) -> ExporterSpec {
            ExporterSpec { collectors, ..SPEC }
        }
        let nothing = |name| CollectorSpec {
            name,
            default_enabled: true,
            help: "",
            new: |_| AnyCollector::blocking(Nothing),
        };
        let twice: &'static [CollectorSpec] =
            Box::leak(Box::new([nothing("cpu"), nothing("slow"), nothing("cpu")]));
        let parsed = parse(&spec_of(twice), "0.1.0", own(), ["demo-exporter"]);
        match parsed {
            Err(CliOutcome::Error(e)) => assert!(e.contains("\"cpu\" is listed twice"), "{e}"),
            _ => panic!("a collector listed twice was accepted"),
        }
        for bad in ["", "Cpu", "cpu.info", "cpu-info"] {
            let one: &'static [CollectorSpec] = Box::leak(Box::new([nothing(bad)]));
            let e = check_collector_names(&spec_of(one)).unwrap_err();
            assert!(e.contains("not lower-case"), "{bad}: {e}");
        }
        assert_eq!(check_collector_names(&SPEC), Ok(()));
    }

    fn own() -> Vec<Arg> {
        vec![Arg::new("path.procfs")
            .long("path.procfs")
            .default_value("/proc")]
    }

    fn run(args: &[&str]) -> Result<(CommonOptions, Settings), CliOutcome> {
        let mut argv = vec!["demo-exporter"];
        argv.extend_from_slice(args);
        parse(&SPEC, "0.1.0", own(), argv)
    }

    fn error(args: &[&str]) -> String {
        match run(args) {
            Err(CliOutcome::Error(e)) => e,
            Err(CliOutcome::Exit(e)) => panic!("unexpected exit: {e}"),
            Ok(_) => panic!("expected an error for {args:?}"),
        }
    }

    #[test]
    fn defaults() {
        let (o, s) = run(&[]).unwrap();
        assert_eq!(o.listen_addresses, vec![":10999"]);
        assert_eq!(o.telemetry_path, "/metrics");
        assert_eq!(o.collectors, vec!["cpu"]);
        assert_eq!(o.max_requests, 40);
        assert_eq!(o.scrape_timeout, Duration::from_secs(9));
        assert_eq!(s.value("path.procfs").unwrap().as_deref(), Some("/proc"));
    }

    #[test]
    fn flags_toggle_collectors_and_last_one_wins() {
        let (o, _) = run(&["--collector.slow", "--no-collector.cpu"]).unwrap();
        assert_eq!(o.collectors, vec!["slow"]);
        let (o, _) = run(&["--no-collector.cpu", "--collector.cpu"]).unwrap();
        assert_eq!(o.collectors, vec!["cpu"]);
        let (o, _) = run(&["--collector.disable-defaults", "--collector.slow"]).unwrap();
        assert_eq!(o.collectors, vec!["slow"]);
        let (o, _) = run(&[
            "--web.listen-address=127.0.0.1:1",
            "--web.listen-address",
            "[::1]:2",
        ])
        .unwrap();
        assert_eq!(o.listen_addresses, vec!["127.0.0.1:1", "[::1]:2"]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert!(error(&["--log.level=loud"]).contains("--log.level"));
        assert!(error(&["--log.format=xml"]).contains("--log.format"));
        assert!(error(&["--web.max-requests=-1"]).contains("--web.max-requests"));
        assert!(error(&["--scrape.timeout=5"]).contains("--scrape.timeout"));
        assert!(error(&["--scrape.timeout=99999999999999999999s"]).contains("--scrape.timeout"));
        assert!(error(&["--web.listen-address=nonsense"]).contains("--web.listen-address"));
        assert!(error(&["--web.telemetry-path=metrics"]).contains("--web.telemetry-path"));
        assert!(error(&["--bogus"]).contains("--bogus"));
        assert!(error(&["--config.file=/nonexistent.toml"]).contains("/nonexistent.toml"));
    }

    #[test]
    fn help_and_version_exit_cleanly() {
        assert!(matches!(run(&["--version"]), Err(CliOutcome::Exit(v)) if v.contains("0.1.0")));
        assert!(
            matches!(run(&["--help"]), Err(CliOutcome::Exit(h)) if h.contains("--web.listen-address"))
        );
    }

    #[test]
    fn file_env_and_flags_in_order_of_precedence() {
        let dir = std::env::temp_dir().join(format!("cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("demo.toml");
        std::fs::write(
            &file,
            "path.procfs = \"/from/file\"\n[web]\nlisten-address = [\"127.0.0.1:7\"]\ntelemetry-path = \"/m\"\n[log]\nlevel = \"debug\"\n[collector]\ncpu = false\n[collector.slow]\nenabled = true\n",
        )
        .unwrap();
        let path = format!("--config.file={}", file.display());
        let (o, s) = run(&[&path]).unwrap();
        assert_eq!(o.listen_addresses, vec!["127.0.0.1:7"]);
        assert_eq!(o.telemetry_path, "/m");
        assert_eq!(o.log_level, Level::Debug);
        assert_eq!(o.collectors, vec!["slow"]);
        assert_eq!(
            s.value("path.procfs").unwrap().as_deref(),
            Some("/from/file")
        );

        // The command line wins over the file.
        let (o, s) = run(&[
            &path,
            "--web.telemetry-path=/x",
            "--path.procfs=/cli",
            "--collector.cpu",
        ])
        .unwrap();
        assert_eq!(o.telemetry_path, "/x");
        assert_eq!(s.value("path.procfs").unwrap().as_deref(), Some("/cli"));
        assert_eq!(o.collectors, vec!["cpu", "slow"]);

        // A bad value in the file names the key and the file.
        std::fs::write(&file, "[log]\nformat = \"xml\"\n").unwrap();
        let e = error(&[&path]);
        assert!(e.contains("--log.format") && e.contains("demo.toml"), "{e}");
        // An unknown key is refused rather than silently ignored.
        std::fs::write(&file, "[web]\nlisten-adress = [\":1\"]\n").unwrap();
        assert!(error(&[&path]).contains("web.listen-adress"));
        std::fs::write(&file, "not = [valid toml").unwrap();
        assert!(error(&[&path]).contains("not valid TOML"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arrays_of_tables_from_the_file() {
        let dir = std::env::temp_dir().join(format!("cli-tables-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("demo.toml");
        std::fs::write(
            &file,
            "[[path.procfs]]\nname = \"a\"\nport = 1\n[[path.procfs]]\nname = \"b\"\n",
        )
        .unwrap();
        let path = format!("--config.file={}", file.display());
        let (_, s) = run(&[&path]).unwrap();
        let tables = s.tables("path.procfs").unwrap().unwrap();
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0]["name"], "a");
        assert_eq!(tables[0]["port"], "1");
        assert_eq!(tables[1]["name"], "b");
        assert!(s.tables("web.telemetry-path").unwrap().is_none());
        // A flag wins over the file.
        let (_, s) = run(&[&path, "--path.procfs=/x"]).unwrap();
        assert!(s.tables("path.procfs").unwrap().is_none());
        // Values must be single values.
        std::fs::write(&file, "[[path.procfs]]\nname = [\"a\"]\n").unwrap();
        let (_, s) = run(&[&path]).unwrap();
        assert!(s.tables("path.procfs").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations_in_go_style() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        // Beyond what a Duration holds: an error, not a panic at start-up.
        assert!(parse_duration("99999999999999999999s")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration("1e400s").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn env_names() {
        assert_eq!(
            env_name("HOST_EXPORTER", "web.listen-address"),
            "HOST_EXPORTER_WEB_LISTEN_ADDRESS"
        );
    }
}
