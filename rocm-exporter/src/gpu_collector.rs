//! The `gpu` collector: asks the sampler for a sample and renders it. It never blocks the scrape
//! longer than the sampler's wait, whatever the backend does.

use crate::families;
use crate::sampler::Sampler;
use common::{CollectFuture, Collector};
use std::time::Instant;

pub struct GpuCollector {
    sampler: Sampler,
}

impl GpuCollector {
    pub fn new(sampler: Sampler) -> Self {
        GpuCollector { sampler }
    }
}

impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let reading = self.sampler.read().await;
            Ok(families::render(
                self.sampler.backend(),
                &reading,
                Instant::now(),
            ))
        })
    }
}
