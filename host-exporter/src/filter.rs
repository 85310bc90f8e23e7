//! node_exporter's include/exclude regular expressions for devices and mount points; include and
//! exclude are mutually exclusive, as there.

use common::{CliOutcome, Settings};
use regex_lite::Regex;

#[derive(Clone, Debug, Default)]
pub struct DeviceFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

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
                exclude: None,
            }),
            _ => Ok(DeviceFilter {
                include: None,
                exclude,
            }),
        }
    }

    #[cfg(test)]
    pub fn exclude(pattern: &str) -> Self {
        DeviceFilter {
            include: None,
            exclude: Regex::new(pattern).ok(),
        }
    }

    pub fn ignored(&self, name: &str) -> bool {
        if let Some(include) = &self.include {
            return !include.is_match(name);
        }
        self.exclude.as_ref().is_some_and(|e| e.is_match(name))
    }
}
