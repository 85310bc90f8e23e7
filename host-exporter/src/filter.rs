//! node_exporter's include/exclude regular expressions for devices and mount points; include and
//! exclude are mutually exclusive, as there.

use common::{CliOutcome, Settings};
use regex_lite::Regex;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct DeviceFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
    /// Verdicts by name: device and mount names repeat every scrape, and regex-lite is slow.
    verdicts: Mutex<HashMap<String, bool>>,
}

/// The same expressions with an empty verdict cache: the registry builds each collector from
/// one parsed copy of its flags.
impl Clone for DeviceFilter {
    fn clone(&self) -> Self {
        DeviceFilter {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            verdicts: Mutex::default(),
        }
    }
}

/// Enough for any real host; a host that churns names (containers) just refills it.
const VERDICT_CACHE_LIMIT: usize = 4096;

impl DeviceFilter {
    /// Reads `<prefix>-include` / `<prefix>-exclude` (or the given key names) from the settings.
    pub fn from_settings(
        settings: &Settings,
        include_key: &str,
        exclude_key: &str,
    ) -> Result<Self, CliOutcome> {
        let compile = |key: &str| -> Result<Option<Regex>, CliOutcome> {
            match settings.value(key)? {
                None => Ok(None),
                Some(raw) if raw.is_empty() => Ok(None),
                Some(raw) => Regex::new(&raw)
                    .map(Some)
                    .map_err(|e| settings.invalid(key, &raw, &e.to_string())),
            }
        };
        let include = compile(include_key)?;
        let exclude = compile(exclude_key)?;
        // A default exclude gives way to an explicit include, as in node_exporter.
        let exclude_given = settings.is_explicit(exclude_key);
        match (&include, &exclude) {
            (Some(_), Some(_)) if exclude_given => Err(CliOutcome::Error(format!(
                "--{include_key} and --{exclude_key} are mutually exclusive"
            ))),
            (Some(_), _) => Ok(DeviceFilter {
                include,
                ..Default::default()
            }),
            _ => Ok(DeviceFilter {
                exclude,
                ..Default::default()
            }),
        }
    }

    #[cfg(test)]
    pub fn exclude(pattern: &str) -> Self {
        DeviceFilter {
            exclude: Regex::new(pattern).ok(),
            ..Default::default()
        }
    }

    pub fn ignored(&self, name: &str) -> bool {
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(verdict) = verdicts.get(name) {
            return *verdict;
        }
        let verdict = match &self.include {
            Some(include) => !include.is_match(name),
            None => self.exclude.as_ref().is_some_and(|e| e.is_match(name)),
        };
        if verdicts.len() >= VERDICT_CACHE_LIMIT {
            verdicts.clear();
        }
        verdicts.insert(name.to_string(), verdict);
        verdict
    }
}
