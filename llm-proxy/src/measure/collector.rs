//! The `proxy` collector: a snapshot of what the proxies measured, read on each scrape.

use super::metrics::ProxyMetrics;
use common::collector::{CollectFuture, Collector};
use std::sync::Arc;

pub struct ProxyCollector {
    measurements: Arc<ProxyMetrics>,
}

impl ProxyCollector {
    /// The collector's name (`--collector.proxy`): written here only.
    pub const NAME: &'static str = "proxy";

    pub fn new(measurements: Arc<ProxyMetrics>) -> Self {
        ProxyCollector { measurements }
    }
}

impl Collector for ProxyCollector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move { Ok(self.measurements.families()) })
    }
}
