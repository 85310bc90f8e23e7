#!/usr/bin/env python3
"""Writes the provisioned dashboards (grafana/dashboards/*.json) from one description.

Run `python3 grafana/build_dashboards.py` after a change, and commit the JSON it writes;
tools/check_stack.sh fails when the JSON in the repository differs from what this prints.
Current panel types only (timeseries, stat, gauge, table, bargauge; row headers), a unit on every panel,
the `$datasource` and `$instance` variables, `$__rate_interval` in every range.
"""

import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
I = 'instance=~"$instance"'

# Dashboards and their panels: (type, title, unit, [(expr, legend)], width, options)
# Widths are on Grafana's 24-column grid; panels flow left to right, top to bottom.


def ts(title, unit, targets, w=12, h=8, **kw):
    return dict(type="timeseries", title=title, unit=unit, targets=targets, w=w, h=h, **kw)


def stat(title, unit, targets, w=6, h=4, **kw):
    return dict(type="stat", title=title, unit=unit, targets=targets, w=w, h=h, **kw)


def gauge(title, unit, targets, w=6, h=6, **kw):
    return dict(type="gauge", title=title, unit=unit, targets=targets, w=w, h=h, **kw)


def table(title, unit, targets, w=24, h=8, **kw):
    return dict(type="table", title=title, unit=unit, targets=targets, w=w, h=h, instant=True, **kw)


def bars(title, unit, targets, w=12, h=8, **kw):
    return dict(type="bargauge", title=title, unit=unit, targets=targets, w=w, h=h, **kw)


def row(title):
    """A row header: the panels after it, up to the next row, belong to it."""
    return dict(type="row", title=title, w=24, h=1)


def q(expr, legend=""):
    return (expr, legend)


# The SLO row: prometheus/rules/slo.yml's objectives, the SLIs over 30 days, the error budget
# left and how fast it burns now (1 = the pace that spends exactly the 30-day budget). The titles
# name the objectives of slo.yml (slo:objective:ratio); tools/check_stack.py keeps them in step.
SLO_ROW = [
    row("Service level objectives (30 days)"),
    stat("Availability (30d; objective 99.9 %)", "percentunit", [q(f'upstream:llm_request_success:ratio_rate30d{{{I}}}', "{{upstream}}")], w=6, decimals=3),
    stat("First token within 0.5 s (30d; objective 95 %)", "percentunit", [q(f'upstream:llm_time_to_first_token_good:ratio_rate30d{{{I}}}', "{{upstream}}")], w=6, decimals=2),
    stat("Error budget left (30d)", "percentunit", [q(f'upstream:slo_error_budget_remaining:ratio_rate30d{{{I}}}', "{{upstream}} {{slo}}")], w=6, decimals=1),
    stat("Burn rate (1h)", "short", [q(f'upstream:slo_burn_rate:ratio_rate1h{{{I}}}', "{{upstream}} {{slo}}")], w=6, decimals=1),
    ts("Error budget left", "percentunit", [q(f'upstream:slo_error_budget_remaining:ratio_rate30d{{{I}}}', "{{upstream}} {{slo}}")], w=12),
    ts("Burn rate", "short", [q(f'upstream:slo_burn_rate:ratio_rate1h{{{I}}}', "{{upstream}} {{slo}}")], w=12),
]


# The Energy row (issue 15): the recording rules of prometheus/rules/energy.yml, per host
# (instance:…) and per model (instance_model:…), the power of each device, energy today.
# "Energy today" adds the 15 s samples of instance:llm_power_watts:rate5m (its rule group is
# pinned to interval 15s) since midnight: joules = sum × 15, kWh = joules / 3.6e6.
ENERGY_ROW = [
    row("Energy"),
    stat("Energy per generated token", "joule", [q(f'instance:llm_joules_per_generated_token:rate5m{{{I}}}', "{{instance}}")], w=4, decimals=2),
    stat("Generated tokens per kWh", "short", [q(f'instance:llm_generated_tokens_per_kwh:rate5m{{{I}}}', "{{instance}}")], w=4),
    stat("Cost per million generated tokens", "short", [q(f'instance:llm_energy_cost_per_million_tokens:rate5m{{{I}}}', "{{instance}} {{currency}}")], w=4, decimals=3),
    stat("Generated tokens/s", "short", [q(f'instance:llm_generated_tokens:rate5m{{{I}}}', "{{instance}}")], w=4),
    stat("Counted power now", "watt", [q(f'instance:llm_power_watts:rate5m{{{I}}}', "{{instance}}")], w=4),
    stat("Energy today", "kwatth", [q(f'sum_over_time(instance:llm_power_watts:rate5m{{{I}}}[$__range]) * 15 / 3.6e6', "{{instance}}")], w=4, decimals=2, instant=True, time_from="now/d"),
    # Now: each GPU (an APU's is its whole package, CPU included) and each CPU package (RAPL).
    bars("Power now per device", "watt", [
        q(f'gpu_power_watts{{{I}}} * on (instance, gpu, id) group_left (model) gpu_info{{{I}}}', "{{instance}} GPU {{gpu}} {{model}}"),
        q(f'max by (instance, index) (rate(node_rapl_package_joules_total{{{I}}}[{RI}]))', "{{instance}} CPU package {{index}} (RAPL)"),
    ]),
    ts("Counted power", "watt", [
        q(f'instance:llm_power_watts:rate5m{{{I}}}', "{{instance}} counted (GPUs + CPU packages, APU once)"),
        q(f'instance:llm_inference_power_watts:rate5m{{{I}}}', "{{instance}} for the tokens (above the idle baseline, if set)"),
    ]),
    ts("Energy per token", "joule", [
        q(f'instance:llm_joules_per_generated_token:rate5m{{{I}}}', "{{instance}} per generated token"),
        q(f'instance_model:llm_joules_per_generated_token:rate5m{{{I}}}', "{{instance}} {{model}} per generated token"),
        q(f'instance_upstream_model:llm_joules_per_prompt_token:rate5m{{{I}}}', "{{instance}} {{model}} prefill, per prompt token (llama.cpp)"),
        q(f'instance_upstream_model:llm_joules_per_decoded_token:rate5m{{{I}}}', "{{instance}} {{model}} decode, per generated token (llama.cpp)"),
    ]),
    ts("Generated tokens per kWh", "short", [
        q(f'instance:llm_generated_tokens_per_kwh:rate5m{{{I}}}', "{{instance}}"),
        q(f'instance_model:llm_generated_tokens_per_kwh:rate5m{{{I}}}', "{{instance}} {{model}}"),
    ]),
    ts("Cost per million generated tokens", "short", [
        q(f'instance:llm_energy_cost_per_million_tokens:rate5m{{{I}}}', "{{instance}} ({{currency}})"),
        q(f'instance_model:llm_energy_cost_per_million_tokens:rate5m{{{I}}}', "{{instance}} {{model}} ({{currency}})"),
    ]),
    # The host's power split by the models' shares of generated tokens.
    ts("Power by model (token share)", "watt", [q(f'instance_model:llm_inference_power_watts:rate5m{{{I}}}', "{{instance}} {{model}}")]),
]


DASHBOARDS = {
    # Seed 000, "8.6.1 Dashboard settings": every panel it lists, on our names.
    "local-ai-service": dict(
        title="Local AI Service Dashboard",
        tags=["llm", "seed"],
        panels=[
            ts("Request Rate", "reqps", [q(f'sum by (upstream, route) (rate(llm_requests_total{{{I}}}[{RI}]))', "{{upstream}} {{route}}")]),
            ts("Response Time (p95)", "s", [q(f'histogram_quantile(0.95, sum by (upstream, route, le) (rate(llm_request_duration_seconds_bucket{{{I}}}[{RI}])))', "{{upstream}} {{route}}")]),
            ts("AI Inference Duration", "s", [q(f'histogram_quantile(0.95, sum by (model, le) (rate(llm_request_duration_seconds_bucket{{{I}}}[{RI}])))', "{{model}}")]),
            ts("System Resources", "percent", [
                q(f'system_cpu_usage_percent{{{I}}}', "CPU {{instance}}"),
                q(f'system_memory_usage_percent{{{I}}}', "Memory {{instance}}"),
                q(f'system_gpu_usage_percent{{{I}}}', "GPU {{gpu}} {{instance}}"),
            ], max=100),
            ts("VRAM Usage", "gbytes", [q(f'system_vram_used_gb{{{I}}}', "VRAM used GPU {{gpu}} {{instance}}")]),
            # The failed requests the alerts count (cancelled requests and 4xx answers left out).
            ts("Error Rate", "reqps", [q(f'upstream:llm_requests_errors:rate5m{{{I}}}', "{{upstream}}")]),
        ],
    ),
    # Seed 001, "LLM Service Dashboard", plus the seed's service-health scorecard.
    "llm-inference-service": dict(
        title="LLM Inference Service",
        tags=["llm", "seed"],
        panels=[
            stat("Availability (7d)", "percentunit", [q(f'upstream:llm_request_success:ratio_rate7d{{{I}}}', "{{upstream}}")], decimals=3),
            stat("Latency p95 (7d)", "s", [q(f'upstream:llm_request_duration_seconds:p95_rate7d{{{I}}}', "{{upstream}}")]),
            stat("Throughput", "reqps", [q(f'instance:llm_requests:rate5m{{{I}}}', "{{instance}}")]),
            # Of requests in the last hour, the share that failed (the SLO row shows the burn rate).
            stat("Failed requests (1h)", "percentunit", [q(f'1 - upstream:llm_request_success:ratio_rate1h{{{I}}}', "{{upstream}}")], decimals=2),
            ts("Request Rate", "reqps", [q(f'sum by (upstream) (rate(llm_requests_total{{{I}}}[{RI}]))', "{{upstream}}")]),
            ts("Request Duration (p50, p95, p99)", "s", [
                q(f'histogram_quantile(0.50, sum by (le) (rate(llm_request_duration_seconds_bucket{{{I}}}[{RI}])))', "p50"),
                q(f'histogram_quantile(0.95, sum by (le) (rate(llm_request_duration_seconds_bucket{{{I}}}[{RI}])))', "p95"),
                q(f'histogram_quantile(0.99, sum by (le) (rate(llm_request_duration_seconds_bucket{{{I}}}[{RI}])))', "p99"),
            ]),
            ts("Tokens per Second", "short", [q(f'sum by (upstream) (rate(llm_tokens_generated_total{{{I}}}[{RI}]))', "{{upstream}} tokens/s")]),
            ts("Active Slots", "short", [
                q(f'sum by (upstream) (llm_slots_processing{{{I}}})', "Processing {{upstream}}"),
                q(f'sum by (upstream) (llm_slots_available{{{I}}})', "Available {{upstream}}"),
            ]),
            ts("Error Rate", "reqps", [q(f'sum by (upstream, kind) (rate(llm_request_errors_total{{{I}}}[{RI}]))', "{{upstream}} {{kind}}")]),
            ts("GPU Utilization", "percentunit", [q(f'gpu_utilization_ratio{{{I}}}', "GPU {{gpu}} {{instance}}")], max=1),
            # The seed divided used by free; this is used / total (carve-out + GTT on an APU).
            ts("GPU Memory Usage", "percentunit", [q(f'gpu_memory_used_bytes{{{I}}} / gpu_memory_total_bytes{{{I}}}', "GPU {{gpu}} {{instance}}")], max=1),
            *SLO_ROW,
            *ENERGY_ROW,
        ],
    ),
    # Seed 004, "System Resources Dashboard", plus seed 002's disk I/O and network panels.
    "system-resources": dict(
        title="System Resources",
        tags=["host", "seed"],
        panels=[
            ts("CPU Usage", "percent", [q(f'100 - (avg by (instance) (rate(node_cpu_seconds_total{{mode="idle",{I}}}[{RI}])) * 100)', "{{instance}}")], max=100),
            ts("Memory Usage", "percent", [q(f'(node_memory_MemTotal_bytes{{{I}}} - node_memory_MemAvailable_bytes{{{I}}}) / node_memory_MemTotal_bytes{{{I}}} * 100', "{{instance}}")], max=100),
            ts("Disk Usage", "percent", [q(f'100 - node_filesystem_avail_bytes{{fstype!~"tmpfs|ramfs|squashfs|overlay",{I}}} / node_filesystem_size_bytes{{fstype!~"tmpfs|ramfs|squashfs|overlay",{I}}} * 100', "{{instance}} {{mountpoint}}")], max=100),
            ts("Disk I/O", "Bps", [
                q(f'sum by (instance, device) (rate(node_disk_read_bytes_total{{{I}}}[{RI}]))', "read {{instance}} {{device}}"),
                q(f'-sum by (instance, device) (rate(node_disk_written_bytes_total{{{I}}}[{RI}]))', "write {{instance}} {{device}}"),
            ]),
            ts("Network Traffic", "Bps", [
                q(f'sum by (instance, device) (rate(node_network_receive_bytes_total{{device!="lo",{I}}}[{RI}]))', "in {{instance}} {{device}}"),
                q(f'-sum by (instance, device) (rate(node_network_transmit_bytes_total{{device!="lo",{I}}}[{RI}]))', "out {{instance}} {{device}}"),
            ]),
            ts("Load per CPU", "short", [q(f'node_load1{{{I}}} / on (instance) count by (instance) (node_cpu_seconds_total{{mode="idle",{I}}})', "{{instance}}")]),
            ts("Pressure (stalled time)", "percentunit", [
                q(f'rate(node_pressure_cpu_waiting_seconds_total{{{I}}}[{RI}])', "cpu some {{instance}}"),
                q(f'rate(node_pressure_memory_stalled_seconds_total{{{I}}}[{RI}])', "memory full {{instance}}"),
                q(f'rate(node_pressure_io_stalled_seconds_total{{{I}}}[{RI}])', "io full {{instance}}"),
            ]),
            ts("Temperatures", "celsius", [q(f'node_hwmon_temp_celsius{{{I}}}', "{{instance}} {{chip}} {{sensor}}")]),
        ],
    ),
    # Seed 004, "AI Services Monitoring".
    "ai-services": dict(
        title="AI Services Monitoring",
        tags=["llm", "seed"],
        panels=[
            ts("AI Request Rate", "reqps", [q(f'sum by (model) (rate(llm_requests_total{{{I}}}[{RI}]))', "{{model}}")]),
            ts("AI Response Time", "s", [q(f'histogram_quantile(0.95, sum by (model, le) (rate(llm_request_duration_seconds_bucket{{{I}}}[{RI}])))', "{{model}} 95th percentile")]),
            ts("AI Error Rate", "reqps", [q(f'sum by (model, kind) (rate(llm_request_errors_total{{{I}}}[{RI}]))', "{{model}} {{kind}}")], w=24),
        ],
    ),
    "gpus": dict(
        title="GPUs (AMD and NVIDIA)",
        tags=["gpu"],
        panels=[
            stat("GPUs up", "short", [q(f'sum(gpu_up{{{I}}})', "up")]),
            stat("GPU power", "watt", [q(f'sum(gpu_power_watts{{{I}}})', "total")]),
            stat("GPU memory used", "bytes", [q(f'sum(gpu_memory_used_bytes{{{I}}})', "used")]),
            stat("XID errors (1h)", "short", [q(f'sum(increase(nvidia_xid_errors_total{{{I}}}[1h]))', "XIDs")]),
            ts("Utilization", "percentunit", [q(f'gpu_utilization_ratio{{{I}}} * on (instance, gpu, id) group_left (vendor, model) gpu_info{{{I}}}', "{{instance}} GPU {{gpu}} {{model}}")], max=1),
            ts("Memory used / total", "percentunit", [q(f'gpu_memory_used_bytes{{{I}}} / gpu_memory_total_bytes{{{I}}}', "{{instance}} GPU {{gpu}}")], max=1),
            ts("Memory used", "bytes", [
                q(f'gpu_memory_used_bytes{{{I}}}', "used {{instance}} GPU {{gpu}}"),
                q(f'gpu_memory_total_bytes{{{I}}}', "total {{instance}} GPU {{gpu}}"),
            ]),
            # APU: a small VRAM carve-out plus GTT (system RAM the GPU maps) is what it uses.
            ts("AMD memory pools (VRAM carve-out, GTT)", "bytes", [
                q(f'amdgpu_memory_used_bytes{{{I}}}', "used {{pool}} {{instance}} GPU {{gpu}}"),
                q(f'amdgpu_memory_total_bytes{{{I}}}', "total {{pool}} {{instance}} GPU {{gpu}}"),
            ]),
            ts("Temperature", "celsius", [q(f'gpu_temperature_celsius{{{I}}}', "{{instance}} GPU {{gpu}} {{sensor}}")]),
            ts("Power", "watt", [q(f'gpu_power_watts{{{I}}}', "{{instance}} GPU {{gpu}}")]),
            ts("Energy rate", "watt", [q(f'rate(gpu_energy_joules_total{{{I}}}[{RI}])', "{{instance}} GPU {{gpu}}")]),
            ts("XID errors", "short", [q(f'increase(nvidia_xid_errors_total{{{I}}}[1h])', "{{instance}} GPU {{gpu}} XID {{xid}}")]),
            # Per process: NVIDIA labels the process `name`, AMD `process`; shown alike.
            table("GPU memory per process", "bytes", [
                q(f'sum by (instance, id, pid, name) (nvidia_process_memory_used_bytes{{{I}}})', ""),
                q(f'sum by (instance, id, pid, name) (label_replace(amdgpu_process_memory_bytes{{{I}}}, "name", "$1", "process", "(.*)"))', ""),
            ]),
        ],
    ),
    "llm-servers": dict(
        title="LLM servers (llama.cpp and Ollama)",
        tags=["llm"],
        panels=[
            stat("Servers up", "short", [q(f'sum(llm_up{{{I}}})', "up")]),
            stat("Models loaded", "short", [q(f'sum(llm_models_loaded{{{I}}}) or sum(llm_model_loaded{{{I}}})', "loaded")]),
            stat("Queue depth", "short", [q(f'sum(llm_queue_depth{{{I}}})', "queued")]),
            stat("Active requests (proxy)", "short", [q(f'sum(llm_active_requests{{{I}}})', "active")]),
            table("Server status", "short", [q(f'llm_up{{{I}}}', "")], w=12),
            table("Loaded models", "bytes", [q(f'llm_model_memory_bytes{{{I}}}', "")], w=12),
            ts("Slots", "short", [
                q(f'llm_slots_total{{{I}}}', "total {{upstream}}"),
                q(f'llm_slots_processing{{{I}}}', "processing {{upstream}}"),
                q(f'llm_slots_available{{{I}}}', "available {{upstream}}"),
            ]),
            ts("Queue", "short", [
                q(f'llm_queue_depth{{{I}}}', "queued {{upstream}}"),
                q(f'llamacpp_requests_deferred{{{I}}}', "deferred (llama.cpp) {{upstream}}"),
            ]),
            ts("Time to first token", "s", [
                q(f'histogram_quantile(0.50, sum by (upstream, le) (rate(llm_time_to_first_token_seconds_bucket{{{I}}}[{RI}])))', "p50 {{upstream}}"),
                q(f'histogram_quantile(0.95, sum by (upstream, le) (rate(llm_time_to_first_token_seconds_bucket{{{I}}}[{RI}])))', "p95 {{upstream}}"),
            ]),
            ts("Generation speed", "short", [
                q(f'sum by (upstream) (rate(llm_tokens_generated_total{{{I}}}[{RI}]))', "tokens/s (proxy) {{upstream}}"),
                q(f'sum by (upstream) (rate(llamacpp_tokens_predicted_total{{{I}}}[{RI}]))', "tokens/s (llama.cpp) {{upstream}}"),
                q(f'sum by (upstream) (rate(llm_prompt_tokens_total{{{I}}}[{RI}]))', "prompt tokens/s (proxy) {{upstream}}"),
            ]),
            ts("Inter-token latency (p95)", "s", [q(f'histogram_quantile(0.95, sum by (upstream, le) (rate(llm_inter_token_latency_seconds_bucket{{{I}}}[{RI}])))', "{{upstream}}")]),
            ts("Context used per slot", "percentunit", [q(f'llm_slot_context_used_ratio{{{I}}}', "{{upstream}} slot {{slot}}")], max=1),
            ts("Model memory in VRAM", "bytes", [q(f'llm_model_vram_bytes{{{I}}}', "{{upstream}} {{model}}")]),
            ts("Ollama model keep-alive left", "s", [q(f'llm_model_expires_in_seconds{{{I}}}', "{{upstream}} {{model}}")]),
            ts("Prompt cache hit ratio", "percentunit", [q(f'llm_prompt_cache_hit_ratio{{{I}}}', "{{upstream}}")], max=1),
            ts("Requests by status", "reqps", [q(f'sum by (upstream, code) (rate(llm_requests_total{{{I}}}[{RI}]))', "{{upstream}} {{code}}")]),
            # Why answers ended (stop, length, tool_calls, content_filter, error, other): a rise of
            # `length` means answers cut at max_tokens.
            ts("Answers by finish reason", "reqps", [q(f'sum by (upstream, finish_reason) (rate(llm_requests_finished_total{{{I}}}[{RI}]))', "{{upstream}} {{finish_reason}}")]),
        ],
    ),
    "exporters-health": dict(
        title="Exporters health",
        tags=["meta"],
        panels=[
            table("Targets", "short", [q(f'up{{{I}}}', "")], w=12),
            table("Exporter versions", "short", [q(f'host_exporter_build_info{{{I}}} or nvidia_exporter_build_info{{{I}}} or rocm_exporter_build_info{{{I}}} or llm_exporter_build_info{{{I}}}', "")], w=12),
            ts("Scrape duration", "s", [q(f'scrape_duration_seconds{{{I}}}', "{{job}} {{instance}}")]),
            ts("Samples per scrape", "short", [q(f'scrape_samples_scraped{{{I}}}', "{{job}} {{instance}}")]),
            ts("Collector success", "short", [q(f'node_scrape_collector_success{{job="host",{I}}} or nvidia_exporter_collector_success{{{I}}} or rocm_exporter_collector_success{{{I}}} or llm_exporter_collector_success{{{I}}}', "{{job}} {{collector}}")], max=1),
            ts("Collector duration", "s", [q(f'node_scrape_collector_duration_seconds{{job="host",{I}}} or nvidia_exporter_collector_duration_seconds{{{I}}} or rocm_exporter_collector_duration_seconds{{{I}}} or llm_exporter_collector_duration_seconds{{{I}}}', "{{job}} {{collector}}")]),
            ts("Exporter memory (RSS)", "bytes", [q(f'process_resident_memory_bytes{{job=~"host|nvidia|rocm|llm",{I}}}', "{{job}} {{instance}}")]),
            ts("Exporter CPU", "percentunit", [q(f'rate(process_cpu_seconds_total{{job=~"host|nvidia|rocm|llm",{I}}}[{RI}])', "{{job}} {{instance}}")]),
            ts("GPU backends", "short", [
                q(f'nvidia_up{{{I}}}', "NVML {{instance}}"),
                q(f'rocm_up{{{I}}}', "ROCm {{backend}} {{instance}}"),
            ], max=1),
            ts("GPU sample age", "s", [q(f'rocm_exporter_backend_sample_age_seconds{{{I}}} or nvidia_exporter_nvml_sample_age_seconds{{{I}}}', "{{job}} {{instance}}")]),
            ts("Model server poll duration", "s", [q(f'llm_upstream_poll_duration_seconds{{{I}}}', "{{upstream}}")]),
            ts("Model server restarts (1h)", "short", [q(f'increase(llm_upstream_restarts_total{{{I}}}[1h])', "{{upstream}}")]),
        ],
    ),
}


def variables():
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {"text": "Prometheus", "value": "prometheus"},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
            },
            {
                "name": "instance",
                "label": "Host",
                "type": "query",
                "datasource": DS,
                "definition": 'label_values(up{job=~"host|nvidia|rocm|llm|llama-server"}, instance)',
                "query": {
                    "query": 'label_values(up{job=~"host|nvidia|rocm|llm|llama-server"}, instance)',
                    "refId": "PrometheusVariableQueryEditor-VariableQuery",
                },
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "allValue": ".+",
                "current": {"text": "All", "value": "$__all"},
                "sort": 1,
                "hide": 0,
                "regex": "",
                "options": [],
            },
        ]
    }


def panel_json(pid, p, x, y):
    if p["type"] == "row":
        return {"id": pid, "type": "row", "title": p["title"], "collapsed": False,
                "gridPos": {"x": x, "y": y, "w": p["w"], "h": p["h"]}, "panels": []}
    refs = "ABCDEFGHIJ"
    defaults = {"unit": p["unit"]}
    if "max" in p:
        defaults["min"] = 0
        defaults["max"] = p["max"]
    if "decimals" in p:
        defaults["decimals"] = p["decimals"]
    targets = []
    for i, (expr, legend) in enumerate(p["targets"]):
        t = {"refId": refs[i], "datasource": DS, "expr": expr, "legendFormat": legend, "range": not p.get("instant", False), "instant": p.get("instant", False)}
        if p["type"] == "table":
            t["format"] = "table"
        targets.append(t)
    out = {
        "id": pid,
        "type": p["type"],
        "title": p["title"],
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": p["w"], "h": p["h"]},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": targets,
    }
    if "time_from" in p:
        out["timeFrom"] = p["time_from"]  # a panel's own range, e.g. now/d: today so far
    if p["type"] == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}}
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    elif p["type"] in ("stat", "gauge", "bargauge"):
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    elif p["type"] == "table":
        out["options"] = {"showHeader": True}
        out["transformations"] = [{"id": "merge", "options": {}}]
    return out


def dashboard(uid, d):
    panels = []
    x = y = row_h = 0
    for i, p in enumerate(d["panels"], start=1):
        if x + p["w"] > 24 or p["type"] == "row":
            x, y, row_h = 0, y + row_h, 0
        panels.append(panel_json(i, p, x, y))
        x += p["w"]
        row_h = max(row_h, p["h"])
    return {
        "uid": uid,
        "title": d["title"],
        "tags": d["tags"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": variables(),
        "annotations": {"list": []},
        "links": [{"title": "Dashboards", "type": "dashboards", "asDropdown": True, "tags": [], "includeVars": True, "keepTime": True}],
        "panels": panels,
    }


# ---- The request logs dashboard (issue 18): Loki, the compose `logs` profile ------------------
# Its queries are LogQL on the lines compose/alloy/config.alloy labels: every line has `job`
# (journal, docker) and `host`; llm-exporter's access log has log_type="access", `upstream` and
# `outcome` as labels, every other field parsed at query time (`| json`). The seeds' (001) log
# queries, rewritten for these lines, and a link from a slow request to its trace: the Loki data
# source's derived field on "trace_id" opens it in Jaeger (grafana/provisioning/datasources/).
LOKI = {"type": "loki", "uid": "${loki}"}
ACCESS = '{log_type="access", host=~"$host", upstream=~"$upstream"}'
AUTO = "$__auto"


def logs(title, targets, w=24, h=10, **kw):
    return dict(type="logs", title=title, unit="", targets=targets, w=w, h=h, **kw)


LOGS_DASHBOARDS = {
    "llm-request-logs": dict(
        title="LLM request logs",
        tags=["llm", "logs", "seed"],
        panels=[
            row("Requests (llm-exporter's access log)"),
            stat("Failed requests (1h)", "short", [q(f'sum(count_over_time({ACCESS[:-1]}, outcome="error"}} [1h]))', "failed")], w=6, instant=True),
            stat("Requests over 5 s (1h)", "short", [q(f'sum(count_over_time({ACCESS} | json | duration_seconds > 5 [1h]))', "slow")], w=6, instant=True),
            stat("Generated tokens (1h)", "short", [q(f'sum(sum_over_time({ACCESS} | json | generated_tokens != "" | unwrap generated_tokens | __error__="" [1h]))', "tokens")], w=6, instant=True),
            stat("Error rate (1h)", "percentunit", [q(f'sum(count_over_time({ACCESS[:-1]}, outcome="error"}} [1h])) / sum(count_over_time({ACCESS} [1h]))', "error rate")], w=6, decimals=2, instant=True),
            # Seed 001 "Error rate": failed / all requests, per model server.
            ts("Error rate", "percentunit", [q(f'sum by (upstream) (count_over_time({ACCESS[:-1]}, outcome="error"}} [{AUTO}])) / sum by (upstream) (count_over_time({ACCESS} [{AUTO}]))', "{{upstream}}")], max=1),
            # Seed 001 "Token usage by model": tokens per second, generated and prompt.
            ts("Token usage by model", "short", [
                q(f'sum by (model) (rate({ACCESS} | json | generated_tokens != "" | unwrap generated_tokens | __error__="" [{AUTO}]))', "{{model}} generated tokens/s"),
                q(f'sum by (model) (rate({ACCESS} | json | prompt_tokens != "" | unwrap prompt_tokens | __error__="" [{AUTO}]))', "{{model}} prompt tokens/s"),
            ]),
            ts("Requests by outcome", "reqps", [q(f'sum by (upstream, outcome) (rate({ACCESS} [{AUTO}]))', "{{upstream}} {{outcome}}")]),
            ts("Request duration by model (p95)", "s", [q(f'quantile_over_time(0.95, {ACCESS} | json | unwrap duration_seconds | __error__="" [{AUTO}]) by (model)', "{{model}}")]),
            # Seed 001 "Slow requests (>5 seconds)": each line's trace_id links to its trace.
            logs("Slow requests (over 5 s)", [q(f'{ACCESS} | json | duration_seconds > 5')]),
            # Seed 001 "All errors in last hour", for requests: the failed ones, cancelled included
            # (error_kind says which).
            logs("Failed requests (last hour)", [q(f'{ACCESS[:-1]}, outcome="error"}} | json')], time_from="1h"),
            row("Host, model servers and exporters"),
            # Seed 001 "All errors in last hour", for the rest: lines with an error level (the
            # journal's priority, the exporters' and Ollama's level), and llama-server's text.
            logs("Errors (last hour)", [
                q('{host=~"$host", level=~"error|err|crit|alert|emerg|fatal|panic"}'),
                q('{host=~"$host", service=~"(?i).*llama.*"} |~ "(?i)\\\\berror\\\\b"'),
            ], time_from="1h"),
            ts("Log lines by service", "short", [q(f'sum by (service) (count_over_time({{host=~"$host", job=~".+"}} [{AUTO}]))', "{{service}}")], w=24),
            logs("Model server logs", [q('{host=~"$host", service=~"(?i).*(ollama|llama).*"}')]),
        ],
    ),
}


def logs_variables():
    def loki_label(name, stream):
        return {
            "name": name,
            "label": name.capitalize(),
            "type": "query",
            "datasource": LOKI,
            "definition": f"label_values({stream}, {name})",
            "query": {"type": 1, "label": name, "stream": stream, "refId": "LokiVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".+",
            "current": {"text": "All", "value": "$__all"},
            "sort": 1,
            "hide": 0,
            "regex": "",
            "options": [],
        }
    return {
        "list": [
            {
                "name": "loki",
                "label": "Logs data source",
                "type": "datasource",
                "query": "loki",
                "current": {"text": "Loki", "value": "loki"},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
            },
            loki_label("host", '{job=~".+"}'),
            loki_label("upstream", '{log_type="access", host=~"$host"}'),
        ]
    }


def logs_panel_json(pid, p, x, y):
    """panel_json, on the Loki data source: queries are range or instant log queries."""
    out = panel_json(pid, p, x, y)
    if p["type"] == "row":
        return out
    out["datasource"] = LOKI
    for t in out["targets"]:
        t["datasource"] = LOKI
        t["queryType"] = "instant" if p.get("instant") else "range"
        del t["range"], t["instant"]
        if p["type"] == "logs":
            del t["legendFormat"]
    if p["type"] == "logs":
        del out["fieldConfig"]["defaults"]["unit"]
        out["options"] = {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                          "enableLogDetails": True, "dedupStrategy": "none", "prettifyLogMessage": False}
    return out


def logs_dashboard(uid, d):
    out = dashboard(uid, d)
    out["templating"] = logs_variables()
    out["time"] = {"from": "now-24h", "to": "now"}
    panels = []
    x = y = row_h = 0
    for i, p in enumerate(d["panels"], start=1):
        if x + p["w"] > 24 or p["type"] == "row":
            x, y, row_h = 0, y + row_h, 0
        panels.append(logs_panel_json(i, p, x, y))
        x += p["w"]
        row_h = max(row_h, p["h"])
    out["panels"] = panels
    return out


def render_logs():
    return {f"{uid}.json": json.dumps(logs_dashboard(uid, d), indent=2, ensure_ascii=False) + "\n" for uid, d in LOGS_DASHBOARDS.items()}


def render():
    return {**{f"{uid}.json": json.dumps(dashboard(uid, d), indent=2, ensure_ascii=False) + "\n" for uid, d in DASHBOARDS.items()}, **render_logs()}


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")
    check = "--check" in sys.argv
    stale = []
    for name, text in render().items():
        path = os.path.join(out_dir, name)
        if check:
            try:
                current = open(path, encoding="utf-8").read()
            except OSError:
                current = None
            if current != text:
                stale.append(name)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if check:
        extra = sorted(set(n for n in os.listdir(out_dir) if n.endswith(".json")) - set(render()))
        if stale or extra:
            print(f"grafana/dashboards out of date: {stale} {extra}; run python3 grafana/build_dashboards.py", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
