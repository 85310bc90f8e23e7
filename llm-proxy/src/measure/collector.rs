//! The `proxy` collector (named in llm-exporter's collector list): a snapshot of what the proxies measured, read on each scrape.

use super::metrics::ProxyMetrics;
use common::collector::{CollectFuture, Collector};
use std::sync::Arc;

pub struct ProxyCollector {
    measurements: Arc<ProxyMetrics>,
}

impl ProxyCollector {
    pub fn new(measurements: Arc<ProxyMetrics>) -> Self {
        ProxyCollector { measurements }
    }
}

impl Collector for ProxyCollector {
    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move { Ok(self.measurements.families()) })
    }
}
