#!/usr/bin/env bash
# All checks of the monitoring stack (issue 6): Prometheus config, rules and their unit tests,
# Alertmanager config, routing and templates, the compose file (docker-compose and the
# compose-spec schema), the logs and traces profiles' Loki, Alloy and Jaeger configurations (offline:
# their images cannot run here), dashboards and provisioning, metric names against the exporters' golden
# outputs, canaries that prove each check fails on a broken input, and a live end-to-end run of
# the real exporters, Prometheus and Alertmanager on loopback. Exits non-zero on any failure.
#
#   tools/check_stack.sh             everything
#   tools/check_stack.sh --offline   everything but the live run
#
# Needs (Debian): prometheus (promtool), prometheus-alertmanager (amtool), docker-compose,
# python3-yaml, python3-jsonschema, a C compiler (cc, for the fake libnvidia-ml), cargo.
# EXPORTER_BIN_DIR=DIR uses exporter binaries from DIR instead of `cargo build` (debug, in
# ${CARGO_TARGET_DIR:-target}, which `cargo test --workspace` has usually built already).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

offline=0
[ "${1:-}" = "--offline" ] && offline=1

failed=()
step() {  # step NAME COMMAND...: runs it, records a failure, goes on
  local name="$1"; shift
  echo "== $name"
  if "$@"; then :; else failed+=("$name"); echo "FAIL $name" >&2; fi
}

for cmd in promtool amtool docker-compose; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd (apt-get install prometheus prometheus-alertmanager docker-compose)" >&2; exit 2; }
done
[ "$offline" = 1 ] || for cmd in prometheus prometheus-alertmanager cc cargo; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd (apt-get install prometheus prometheus-alertmanager gcc; cargo)" >&2; exit 2; }
done

# A Python with PyYAML and jsonschema: Debian's (python3-yaml, python3-jsonschema), else the
# python3 on PATH, else pip installs the two into the user site.
PY=""
for p in /usr/bin/python3 "$(command -v python3 || true)"; do
  if [ -x "$p" ] && "$p" -c 'import yaml, jsonschema' 2>/dev/null; then PY="$p"; break; fi
done
if [ -z "$PY" ]; then
  python3 -m pip install --quiet --user --disable-pip-version-check pyyaml 'jsonschema<4.18' \
    || python3 -m pip install --quiet --user --disable-pip-version-check --break-system-packages pyyaml 'jsonschema<4.18'
  PY="$(command -v python3)"
fi

tmp="$(mktemp -d -t check-stack-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

# ---- Prometheus --------------------------------------------------------------------------
step "promtool check config" promtool check config prometheus/prometheus.yml
step "promtool check rules" promtool check rules --lint=all --lint-fatal prometheus/rules/*.yml
step "promtool test rules" promtool test rules prometheus/tests/*.yml

# ---- Alertmanager ------------------------------------------------------------------------
step "amtool check-config" amtool check-config alertmanager/alertmanager.yml
routes() {
  local n=0 bad=0 expected labels
  while IFS='|' read -r expected labels; do
    expected="$(echo "$expected" | tr -d ' ')"
    [ -z "$expected" ] || [ "${expected:0:1}" = "#" ] && continue
    n=$((n + 1))
    # shellcheck disable=SC2086
    if ! amtool config routes test --config.file=alertmanager/alertmanager.yml \
        --verify.receivers="$expected" $labels >/dev/null; then
      echo "route test failed: $labels -> expected $expected, got $(amtool config routes test --config.file=alertmanager/alertmanager.yml $labels 2>/dev/null)" >&2
      bad=1
    fi
  done < alertmanager/tests/routes.txt
  [ "$n" -gt 0 ] || { echo "no route tests" >&2; return 1; }
  # Every receiver has a route test that reaches it.
  for r in $("$PY" -c 'import yaml; print(" ".join(r["name"] for r in yaml.safe_load(open("alertmanager/alertmanager.yml"))["receivers"]))'); do
    grep -Eq "^[^#]*\b$r\b.*\|" alertmanager/tests/routes.txt || { echo "receiver $r has no route test" >&2; bad=1; }
  done
  [ "$bad" = 0 ] && echo "ok   $n route tests"
}
step "amtool config routes test" routes
templates() {
  local out
  out="$(amtool template render --template.glob='alertmanager/templates/*.tmpl' \
    --template.text='{{ template "llm.title" . }}|{{ template "llm.text" .Alerts }}')" || return 1
  # amtool's example data has two alerts with labels; each must render its labels line.
  [ "$(grep -c '^Labels: .*=' <<<"$out")" -ge 2 ] || { echo "templates render no labels: $out" >&2; return 1; }
  # With llm.runbook_base set, a relative runbook_url becomes an absolute link; an absolute
  # one stays as it is.
  local d; d=$(mktemp -d)
  sed 's#{{ define "llm.runbook_base" }}{{ end }}#{{ define "llm.runbook_base" }}https://git.example/r/blob/main/{{ end }}#' \
    alertmanager/templates/llm.tmpl > "$d/llm.tmpl"
  out="$(amtool template render --template.glob="$d/*.tmpl" \
    --template.text='{{ template "llm.runbook" "docs/runbooks.md#x" }} {{ template "llm.runbook" "https://a/b" }}')"
  rm -rf "$d"
  [ "$out" = "https://git.example/r/blob/main/docs/runbooks.md#x https://a/b" ] ||
    { echo "runbook links with a base set: $out" >&2; return 1; }
  echo "ok   notification templates render (runbook links absolute once llm.runbook_base is set)"
}
step "amtool template render" templates

# ---- Compose -----------------------------------------------------------------------------
compose_config() {
  (cd compose && docker-compose -f compose.yaml config -q \
    && docker-compose -f compose.yaml --profile monitoring --profile nvidia --profile rocm --profile logs --profile traces config -q) || return 1
  local services
  services="$(cd compose && docker-compose -f compose.yaml --profile monitoring config --services | sort | tr '\n' ' ')"
  for s in alertmanager grafana host-exporter llm-exporter prometheus; do
    grep -qw "$s" <<<"$services" || { echo "monitoring profile lacks $s: $services" >&2; return 1; }
  done
  services="$(cd compose && docker-compose -f compose.yaml --profile logs --profile traces config --services | sort | tr '\n' ' ')"
  for s in alloy jaeger loki; do
    grep -qw "$s" <<<"$services" || { echo "logs/traces profiles lack $s: $services" >&2; return 1; }
  done
  echo "ok   docker-compose config (all profiles)"
}
step "docker-compose config" compose_config
step "compose-spec schema" "$PY" tools/check_stack.py schema
step "compose requirements" "$PY" tools/check_stack.py compose
step "setup, GPU and secret checks on fake hosts" tools/check_compose_scripts.sh
step "logs and traces profiles (Loki, Alloy, Jaeger; offline)" "$PY" tools/check_stack.py logs

# ---- Dashboards, alerts, metric names ----------------------------------------------------
step "dashboards generated" "$PY" grafana/build_dashboards.py --check
step "dashboards" "$PY" tools/check_stack.py dashboards
step "alerts and runbooks" "$PY" tools/check_stack.py alerts
step "metric names" "$PY" tools/check_stack.py metrics

# ---- Canaries: each check must fail on a broken copy ---------------------------------------
# replace FILE OLD NEW: the first OLD in FILE becomes NEW (a canary's setup; fails if OLD is gone).
replace() {
  "$PY" -c 'import sys; p, o, n = sys.argv[1:]; s = open(p).read(); assert o in s, (p, o); open(p, "w").write(s.replace(o, n, 1))' "$@"
}
canaries() {
  local copy="$tmp/canary" bad=0
  mkdir -p "$copy"
  git ls-files -z | xargs -0 cp --parents -t "$copy" 2>/dev/null || true
  cp -r prometheus alertmanager grafana compose docs tools "$copy/"
  canaries=0
  expect_fail() {  # expect_fail WHAT SETUP-COMMAND CHECK-COMMAND...
    local what="$1" setup="$2"; shift 2
    canaries=$((canaries + 1))
    rm -rf "$copy.w" && cp -r "$copy" "$copy.w"
    (cd "$copy.w" && eval "$setup")
    if (cd "$copy.w" && CHECK_STACK_ROOT="$copy.w" "$@") >/dev/null 2>&1; then
      echo "canary not caught: $what" >&2; bad=1
    fi
  }
  # Controls: the unbroken copy passes every check the canaries use.
  for c in "promtool test rules prometheus/tests/alerts_test.yml prometheus/tests/recording_test.yml prometheus/tests/energy_test.yml prometheus/tests/energy_settings_test.yml" routes \
      "$PY tools/check_stack.py schema" "$PY tools/check_stack.py compose" "$PY tools/check_stack.py dashboards" \
      "$PY tools/check_stack.py metrics" "$PY tools/check_stack.py alerts" "$PY tools/check_stack.py logs"; do
    # shellcheck disable=SC2086
    (cd "$copy" && CHECK_STACK_ROOT="$copy" $c) >/dev/null 2>&1 || { echo "control failed on the unbroken copy: $c" >&2; bad=1; }
  done
  expect_fail "alert threshold changed" "sed -i 's/system_cpu_usage_percent > 80/system_cpu_usage_percent > 86/' prometheus/rules/alerts.yml" \
    promtool test rules prometheus/tests/alerts_test.yml
  expect_fail "critical relabelled warning" "sed -i 's/severity: critical}/severity: warning}/' prometheus/rules/alerts.yml" \
    promtool test rules prometheus/tests/alerts_test.yml
  expect_fail "recording rule changed" "sed -i 's|node_memory_MemAvailable_bytes{job=\"host\"} / 1024^3|node_memory_MemAvailable_bytes{job=\"host\"} / 1e9|' prometheus/rules/recording.yml" \
    promtool test rules prometheus/tests/recording_test.yml
  expect_fail "critical no longer pages" "sed -i 's/receiver: pager/receiver: chat/' alertmanager/alertmanager.yml" routes
  expect_fail "unknown compose key" "sed -i 's/^  prometheus:/  prometheus:\n    bogus_key: 1/' compose/compose.yaml" "$PY" tools/check_stack.py schema
  expect_fail "Alertmanager starts without the secrets check" "sed -i '/^  alertmanager:/,/^  grafana:/{/depends_on:/d;/check-secrets: {condition/d}' compose/compose.yaml" "$PY" tools/check_stack.py compose
  expect_fail "service without profile" "sed -i '0,/profiles: \[monitoring\]/s///' compose/compose.yaml" "$PY" tools/check_stack.py compose
  expect_fail "dashboard query does not parse" "sed -i '0,/sum by (model) (rate(/s//sum by (model) (rate((/' grafana/dashboards/ai-services.json" "$PY" tools/check_stack.py dashboards
  expect_fail "panel outside the grid" "sed -i '0,/\"w\": 12/s//\"w\": 30/' grafana/dashboards/gpus.json" "$PY" tools/check_stack.py dashboards
  expect_fail "undeclared variable" "\"$PY\" -c 'p=\"grafana/dashboards/gpus.json\"; s=open(p).read(); open(p,\"w\").write(s.replace(\"\$instance\", \"\$host\", 1))'" "$PY" tools/check_stack.py dashboards
  expect_fail "recorded instance: series not filtered" "sed -i 's/instance:llm_requests:rate5m{instance=~\\\\\"\$instance\\\\\"}/instance:llm_requests:rate5m/' grafana/dashboards/llm-inference-service.json" "$PY" tools/check_stack.py dashboards
  expect_fail "one selector of a query not filtered" "sed -i 's|/ on (instance) count by (instance) (node_cpu_seconds_total{mode=\\\\\"idle\\\\\",instance=~\\\\\"\$instance\\\\\"})|/ on (instance) count by (instance) (node_cpu_seconds_total{mode=\\\\\"idle\\\\\"})|' grafana/dashboards/system-resources.json" "$PY" tools/check_stack.py dashboards
  expect_fail "metric no exporter emits" "sed -i 's/llm_queue_depth > 100/llm_queue_length > 100/' prometheus/rules/alerts.yml" "$PY" tools/check_stack.py metrics
  expect_fail "metric gone from golden files" "sed -i 's/^gpu_utilization_ratio{/gpu_busy_ratio{/' */tests/golden/*.prom" "$PY" tools/check_stack.py metrics
  expect_fail "runbook section missing" "sed -i 's/^### GPUTooHot/### GPU temperature/' docs/runbooks.md" "$PY" tools/check_stack.py alerts
  expect_fail "client disconnects counted as failures" "sed -i 's/kind!=\"client_disconnect\"/kind=~\".+\"/g' prometheus/rules/recording.yml" \
    promtool test rules prometheus/tests/alerts_test.yml
  expect_fail "OllamaDown fires on a healthy Ollama" "sed -i 's/llm_up{backend=\"ollama\"} == 0/llm_up{backend=\"ollama\"} < 2/' prometheus/rules/alerts.yml" \
    promtool test rules prometheus/tests/alerts_test.yml
  expect_fail "a critical the seeds do not give" "sed -i '/alert: HighLatency/,/labels:/s/severity: warning/severity: critical/' prometheus/rules/alerts.yml" \
    "$PY" tools/check_stack.py alerts
  expect_fail "APU package power counted with the CPU's RAPL" "sed -i 's/amdgpu_apu == 1/amdgpu_apu == 2/' prometheus/rules/energy.yml" \
    promtool test rules prometheus/tests/energy_test.yml
  expect_fail "tokens counted by both the proxy and the poller" "sed -i 's/^          or on (instance, upstream)\$/          or/' prometheus/rules/energy.yml" \
    promtool test rules prometheus/tests/energy_test.yml
  expect_fail "J per token where no token was generated" "sed -i 's/ (instance:llm_generated_tokens:rate5m > 0)\$/ instance:llm_generated_tokens:rate5m/' prometheus/rules/energy.yml" \
    promtool test rules prometheus/tests/energy_test.yml
  expect_fail "energy price without a currency" "sed -i 's/currency: .*/currency: \"\"/' prometheus/rules/energy_settings.yml" \
    promtool test rules prometheus/tests/energy_settings_test.yml
  expect_fail "Energy row lacks the per-model tokens per kWh" "sed -i 's/instance_model:llm_generated_tokens_per_kwh:rate5m{/instance:llm_generated_tokens_per_kwh:rate5m{/' grafana/dashboards/llm-inference-service.json" "$PY" tools/check_stack.py dashboards
  # The logs and traces profiles (issue 18).
  expect_fail "Alloy pushes to another port than Loki's" "replace compose/alloy/config.alloy http://loki:3100/loki http://loki:3101/loki" "$PY" tools/check_stack.py logs
  expect_fail "trace_id as a Loki label" "replace compose/alloy/config.alloy '        outcome  = \"\",' '        outcome  = \"\",
        trace_id = \"\",'" "$PY" tools/check_stack.py logs
  expect_fail "Alloy forwards to an undeclared component" "replace compose/alloy/config.alloy loki.process.lines.receiver loki.process.line.receiver" "$PY" tools/check_stack.py logs
  expect_fail "the logfmt pipeline takes access-log lines" "replace compose/alloy/config.alloy '!~ \\\"^[{]\\\"\"' '|~ \\\"^[{]\\\"\"'" "$PY" tools/check_stack.py logs
  expect_fail "unknown Alloy component" "replace compose/alloy/config.alloy 'loki.source.docker \"containers\"' 'loki.source.dockr \"containers\"'" "$PY" tools/check_stack.py logs
  expect_fail "Alloy reads an env variable compose does not set" "replace compose/compose.yaml '      LOGS_HOST: \${HOST_NAME:-docker-host}' '      HOST: \${HOST_NAME:-docker-host}'" "$PY" tools/check_stack.py logs
  expect_fail "Alloy's storage in the image's alloy-owned directory" "replace compose/compose.yaml '      - alloy-data:/alloy-data' '      - alloy-data:/var/lib/alloy/data' && replace compose/compose.yaml '--storage.path=/alloy-data' '--storage.path=/var/lib/alloy/data'" "$PY" tools/check_stack.py logs
  expect_fail "Loki keeps logs forever" "replace compose/loki/loki.yaml 'retention_enabled: true' 'retention_enabled: false'" "$PY" tools/check_stack.py logs
  expect_fail "Loki schema without structured metadata" "replace compose/loki/loki.yaml 'schema: v13' 'schema: v12'" "$PY" tools/check_stack.py logs
  expect_fail "Jaeger pipeline without its OTLP receiver" "replace compose/jaeger/config.yaml 'receivers: [otlp]' 'receivers: [zipkin]'" "$PY" tools/check_stack.py logs
  expect_fail "Jaeger memory store unbounded" "replace compose/jaeger/config.yaml '          max_traces: 20000
' ''" "$PY" tools/check_stack.py logs
  expect_fail "Jaeger exports to an undefined storage" "replace compose/jaeger/config.yaml 'trace_storage: memstore' 'trace_storage: mem'" "$PY" tools/check_stack.py logs
  expect_fail "trace link to a data source that is not Jaeger" "replace grafana/provisioning/datasources/datasources.yml 'datasourceUid: jaeger' 'datasourceUid: tempo'" "$PY" tools/check_stack.py logs
  expect_fail "trace link regex captures no trace id" "replace grafana/provisioning/datasources/datasources.yml '([0-9a-f]{32})' '[0-9a-f]{32}'" "$PY" tools/check_stack.py logs
  expect_fail "trace link url expanded by provisioning" "replace grafana/provisioning/datasources/datasources.yml \"'\\\$\\\${__value.raw}'\" \"'\\\${__value.raw}'\"" "$PY" tools/check_stack.py logs
  expect_fail "logs dashboard query does not parse" "replace grafana/dashboards/llm-request-logs.json '| json | duration_seconds > 5 [1h]' '| json | duration_seconds > [1h]'" "$PY" tools/check_stack.py dashboards
  expect_fail "logs query not filtered by host" "replace grafana/dashboards/llm-request-logs.json '{host=~\\\"\$host\\\", level' '{level'" "$PY" tools/check_stack.py dashboards
  expect_fail "count_over_time with unwrap" "replace grafana/dashboards/llm-request-logs.json 'sum(sum_over_time(' 'sum(count_over_time('" "$PY" tools/check_stack.py dashboards
  expect_fail "slow requests no longer over 5 s" "replace grafana/dashboards/llm-request-logs.json '| json | duration_seconds > 5\"' '| json | duration_seconds > 50\"'" "$PY" tools/check_stack.py dashboards
  expect_fail "llm-exporter without its access-log flag" "replace compose/compose.yaml '      - --proxy.access-log=\${LLM_ACCESS_LOG-stdout}
' ''" "$PY" tools/check_stack.py logs
  expect_fail "Jaeger UI published on every interface" "replace compose/compose.yaml '\"127.0.0.1:16686:16686\"' '\"16686:16686\"'" "$PY" tools/check_stack.py logs
  expect_fail "env.example does not say how to turn traces on" "replace compose/env.example '# LLM_OTLP_ENDPOINT=http://jaeger:4318/v1/traces
' ''" "$PY" tools/check_stack.py logs
  [ "$bad" = 0 ] && echo "ok   $canaries canaries: every check fails on its broken input"
}
step "canaries" canaries

# ---- Live end-to-end run -------------------------------------------------------------------
if [ "$offline" = 0 ]; then
  live() {
    local bin="${EXPORTER_BIN_DIR:-}"
    if [ -z "$bin" ]; then
      cargo build --locked -j1 -p host-exporter -p nvidia-exporter -p rocm-exporter -p llm-exporter || return 1
      bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
    fi
    "$PY" tools/check_stack_live.py --bin-dir "$bin"
  }
  step "live end-to-end run" live
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "check_stack: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "check_stack: all checks passed"
