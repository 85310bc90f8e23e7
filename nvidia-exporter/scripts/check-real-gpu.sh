#!/bin/bash
# Runs a built nvidia-exporter against the system's real libnvidia-ml on a GPU machine and checks
# what the fake library cannot prove: the real ABI, real values, GPM on Hopper and newer.
#   nvidia-exporter/scripts/check-real-gpu.sh [path/to/nvidia-exporter] [port]
# Needs bash only (no curl). Exits non-zero on the first failed check; prints the scrape.
set -u
BIN=${1:-target/release/nvidia-exporter}
PORT=${2:-10471}
OUT=${OUT:-$(mktemp -d)}
scrape() { # $1: output file
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
    sed '1,/^\r$/d' <&3 > "$1"
    exec 3<&-
}
fail() { echo "FAIL: $*"; kill "$PID" 2>/dev/null; exit 1; }

"$BIN" --web.listen-address="127.0.0.1:$PORT" --log.level=debug 2> "$OUT/stderr.txt" &
PID=$!
for _ in $(seq 50); do scrape "$OUT/first.prom" 2>/dev/null && break; sleep 0.1; done
sleep 2 # GPM values need a second sample
scrape "$OUT/metrics.prom" || fail "no answer on port $PORT"

grep -q '^nvidia_up 1$' "$OUT/metrics.prom" || fail "nvidia_up is not 1: $(grep nvidia_down "$OUT/metrics.prom")"
grep -q '^gpu_up{.*} 1$' "$OUT/metrics.prom" || fail "no GPU is up"
grep -q '^gpu_up{.*} 0$' "$OUT/metrics.prom" && fail "a GPU is down"
for family in gpu_memory_total_bytes gpu_power_watts gpu_temperature_celsius DCGM_FI_DEV_FB_USED \
    DCGM_FI_DEV_FB_TOTAL DCGM_FI_DEV_GPU_UTIL nvidia_clock_hertz nvidia_pcie_link_generation; do
    grep -q "^$family{" "$OUT/metrics.prom" || fail "$family missing"
done
if grep -qE 'modelName="[^"]*(H100|H200|H20|GH200|B200|B100|GB200|RTX PRO 6000)' "$OUT/metrics.prom"; then
    grep -q '^DCGM_FI_PROF_GR_ENGINE_ACTIVE{' "$OUT/metrics.prom" || fail "GPM (DCGM_FI_PROF_*) missing on a Hopper+ GPU"
fi
kill "$PID"; wait "$PID" 2>/dev/null
grep -q panicked "$OUT/stderr.txt" && fail "a panic was logged"

echo "OK: $(grep -c '^[a-zA-Z]' "$OUT/metrics.prom") series; files in $OUT"
grep -E '^(nvidia_up|gpu_|DCGM_FI_DEV_FB_USED|DCGM_FI_PROF_|DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL|DCGM_FI_DEV_VGPU_LICENSE_STATUS|nvidia_nvlink_|nvidia_vgpu_|nvidia_exporter_nvml_(errors_total|sample_duration))' "$OUT/metrics.prom"
grep 'slow NVML call' "$OUT/stderr.txt" | tail -20
