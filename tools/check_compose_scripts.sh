#!/usr/bin/env bash
# Tests of the compose stack's host-side scripts on fake device trees: compose/setup.sh (GPUs,
# model servers, the / mount, .env, Prometheus targets, secrets), compose/check-gpu.sh and
# compose/check-secrets.sh (missing, empty, unreadable, a directory in place of a file). Needs
# root only for the group ids of the fake device nodes and the unreadable-file case.
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*" >&2; failures=$((failures + 1)); }
expect() { # expect DESCRIPTION COMMAND...: the command must succeed
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
has() { grep -q -- "$2" "$1"; }
hasnt() { ! grep -q -- "$2" "$1"; }

# A fake host: /proc/net/tcp{,6} with the given listeners (PORT:ADDRESS, ADDRESS any|loopback),
# /proc/self/mountinfo with / shared or private.
fake_host() { # fake_host DIR shared|private LISTENER...
  local dir=$1 propagation=$2; shift 2
  mkdir -p "$dir/proc/net" "$dir/proc/self" "$dir/dev" "$dir/usr/bin" "$dir/sys/class/drm"
  local opt="shared:1"
  [ "$propagation" = private ] && opt=""
  [ "$propagation" = slave ] && opt="master:1"
  echo "22 1 8:1 / / rw,relatime $opt - ext4 /dev/sda1 rw" | tr -s ' ' > "$dir/proc/self/mountinfo"
  echo "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode" > "$dir/proc/net/tcp"
  echo "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode" > "$dir/proc/net/tcp6"
  # An established connection to the port must not count as a listener.
  echo "   0: 0100007F:A001 0100007F:2CAA 01 00000000:00000000 00:00000000 00000000  1000 0 1" >> "$dir/proc/net/tcp"
  local l port address i=1
  for l in "$@"; do
    port=$(printf '%04X' "${l%%:*}")
    address=${l#*:}
    case "$address" in
      any) echo "   $i: 00000000:$port 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1$i" >> "$dir/proc/net/tcp" ;;
      loopback) echo "   $i: 0100007F:$port 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1$i" >> "$dir/proc/net/tcp" ;;
      any6) echo "   $i: 00000000000000000000000000000000:$port 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1$i" >> "$dir/proc/net/tcp6" ;;
    esac
    i=$((i + 1))
  done
}
setup() { # setup NAME: runs setup.sh on the fake tree $work/NAME, output in $work/NAME-out
  local name=$1
  mkdir -p "$work/$name-out/compose" "$work/$name-out/targets"
  bash compose/setup.sh --root "$work/$name" --compose-dir "$work/$name-out/compose" \
    --targets-dir "$work/$name-out/targets" > "$work/$name.log" 2>&1
}

# 1. An NVIDIA workstation with the Container Toolkit, Ollama on all interfaces (IPv6 socket).
fake_host "$work/nvidia" shared 11434:any6
mkdir -p "$work/nvidia/proc/sys/kernel" && echo gpu-box-1 > "$work/nvidia/proc/sys/kernel/hostname"
touch "$work/nvidia/dev/nvidiactl" "$work/nvidia/dev/nvidia0" "$work/nvidia/usr/bin/nvidia-container-runtime-hook"
expect "setup.sh succeeds on an NVIDIA host" setup nvidia
env="$work/nvidia-out/compose/.env"
expect "NVIDIA host: profiles monitoring,nvidia" has "$env" '^COMPOSE_PROFILES=monitoring,nvidia$'
expect "NVIDIA host: Ollama polled and proxied" has "$env" '^LLM_UPSTREAMS=ollama=http://host.docker.internal:11434$'
expect "NVIDIA host: / shared, so rslave" has "$env" '^HOST_ROOT_MOUNT_OPTIONS=ro,rslave$'
expect "NVIDIA host: its name for the logs and the GPU exporters" has "$env" '^HOST_NAME=gpu-box-1$'
expect "NVIDIA host: nvidia-exporter is a target" has "$work/nvidia-out/targets/nvidia.yml" "nvidia-exporter:10471"
expect "NVIDIA host: no rocm target" has "$work/nvidia-out/targets/rocm.yml" '^\[\]$'
for s in grafana_admin_password alertmanager_webhook_token alertmanager_pagerduty_routing_key alertmanager_slack_webhook_url alertmanager_smtp_password; do
  f="$work/nvidia-out/compose/secrets/$s"
  expect "secret $s created, mode 644, not empty" test -s "$f" -a "$(stat -c %a "$f" 2>/dev/null)" = 644
done
expect "generated secrets are random" test "$(cat "$work/nvidia-out/compose/secrets/grafana_admin_password")" != "$(cat "$work/nvidia-out/compose/secrets/alertmanager_webhook_token")"
expect "placeholders are reported" has "$work/nvidia.log" "alertmanager_pagerduty_routing_key with a placeholder"
# A second run keeps the secrets and the previous .env.
password=$(cat "$work/nvidia-out/compose/secrets/grafana_admin_password")
setup nvidia
expect "a second run keeps existing secrets" test "$password" = "$(cat "$work/nvidia-out/compose/secrets/grafana_admin_password")"
expect "a second run keeps the previous .env" test -f "$env.previous"

# 2. A Strix Halo APU (amdgpu, kfd), llama-server on 127.0.0.1 only, / a private mount.
fake_host "$work/apu" private 8080:loopback
mkdir -p "$work/apu/dev/dri" "$work/apu/sys/bus/pci/drivers/amdgpu" "$work/apu/sys/devices/pci0000:00/0000:c3:00.0/drm/card1"
touch "$work/apu/dev/kfd" "$work/apu/dev/dri/card1" "$work/apu/dev/dri/renderD128"
chgrp 39 "$work/apu/dev/dri/card1" && chgrp 991 "$work/apu/dev/dri/renderD128"
ln -s ../../../bus/pci/drivers/amdgpu "$work/apu/sys/devices/pci0000:00/0000:c3:00.0/driver"
ln -s ../../devices/pci0000:00/0000:c3:00.0/drm/card1 "$work/apu/sys/class/drm/card1"
ln -s ../../../0000:c3:00.0 "$work/apu/sys/devices/pci0000:00/0000:c3:00.0/drm/card1/device"
expect "setup.sh succeeds on an AMD APU host" setup apu
env="$work/apu-out/compose/.env"
expect "APU: profiles monitoring,rocm" has "$env" '^COMPOSE_PROFILES=monitoring,rocm$'
expect "APU: the device nodes' group ids" has "$env" '^VIDEO_GID=39$'
expect "APU: render group id" has "$env" '^RENDER_GID=991$'
expect "APU: llama-server polled" has "$env" '^LLM_UPSTREAMS=llama=http://host.docker.internal:8080$'
expect "APU: llama-server scraped" has "$work/apu-out/targets/llama-server.yml" "host.docker.internal:8080"
expect "APU: a loopback-only server is warned about" has "$work/apu.log" "listens on 127.0.0.1 only"
expect "APU: private /, so no rslave" has "$env" '^HOST_ROOT_MOUNT_OPTIONS=ro$'
expect "APU: rocm-exporter is a target" has "$work/apu-out/targets/rocm.yml" "rocm-exporter:10472"
expect "check-gpu.sh rocm passes on the APU" bash compose/check-gpu.sh rocm "$work/apu"

# 3. A host with no GPU and no model server, whose / is a slave of a shared mount (rslave works);
# an NVIDIA driver without the toolkit on another.
fake_host "$work/bare" slave
expect "setup.sh succeeds on a bare host" setup bare
expect "bare: monitoring only" has "$work/bare-out/compose/.env" '^COMPOSE_PROFILES=monitoring$'
expect "bare: Ollama's default address polled" has "$work/bare-out/compose/.env" '^LLM_UPSTREAMS=ollama=http://host.docker.internal:11434$'
expect "bare: the established connection is no listener" has "$work/bare.log" "no model server found"
expect "bare: a slave / keeps rslave" has "$work/bare-out/compose/.env" '^HOST_ROOT_MOUNT_OPTIONS=ro,rslave$'
bash compose/check-gpu.sh nvidia "$work/bare" > /dev/null 2> "$work/gpu.err"
expect "check-gpu.sh nvidia fails on a bare host, naming the driver" has "$work/gpu.err" "no /dev/nvidiactl"
bash compose/check-gpu.sh rocm "$work/bare" > /dev/null 2> "$work/gpu.err"
expect "check-gpu.sh rocm fails on a bare host, naming kfd" has "$work/gpu.err" "no /dev/kfd"
fake_host "$work/notoolkit" shared
touch "$work/notoolkit/dev/nvidiactl"
setup notoolkit
expect "a driver without the toolkit: no nvidia profile" has "$work/notoolkit-out/compose/.env" '^COMPOSE_PROFILES=monitoring$'
expect "a driver without the toolkit: the toolkit is named" has "$work/notoolkit.log" "nvidia-container-toolkit"
bash compose/check-gpu.sh bogus > /dev/null 2>&1
expect "check-gpu.sh: an unknown profile is a usage error" test $? -eq 2

# 4. check-secrets.sh: each wrong case named as what it is.
s="$work/secrets"
mkdir -p "$s"
for n in grafana_admin_password alertmanager_pagerduty_routing_key alertmanager_slack_webhook_url alertmanager_webhook_token alertmanager_smtp_password; do
  printf 'x' > "$s/$n"; chmod 644 "$s/$n"
done
expect "check-secrets.sh passes on good files" bash compose/check-secrets.sh "$s"
: > "$s/alertmanager_smtp_password"
chmod 600 "$s/alertmanager_webhook_token"
rm "$s/alertmanager_slack_webhook_url"
mkdir "$s/alertmanager_pagerduty_routing_key.d" && rm "$s/alertmanager_pagerduty_routing_key" && mv "$s/alertmanager_pagerduty_routing_key.d" "$s/alertmanager_pagerduty_routing_key"
bash compose/check-secrets.sh "$s" > /dev/null 2> "$work/secrets.err"
expect "check-secrets.sh fails on bad files" test $? -eq 1
expect "an empty file is reported as empty" has "$work/secrets.err" "^empty: compose/secrets/alertmanager_smtp_password"
expect "a mode 600 file is reported as unreadable" has "$work/secrets.err" "^unreadable: compose/secrets/alertmanager_webhook_token"
expect "a missing file is reported as missing" has "$work/secrets.err" "^missing: compose/secrets/alertmanager_slack_webhook_url"
expect "a directory is reported as a directory" has "$work/secrets.err" "alertmanager_pagerduty_routing_key is a directory"
expect "a good file is not reported" hasnt "$work/secrets.err" "grafana_admin_password"
# Owned by Alertmanager's user with mode 600: Alertmanager could read it, Grafana (472) not.
chown 65534 "$s/grafana_admin_password" && chmod 600 "$s/grafana_admin_password"
bash compose/check-secrets.sh "$s" > /dev/null 2> "$work/secrets.err"
expect "a file only 65534 can read is unreadable for Grafana" has "$work/secrets.err" "^unreadable: compose/secrets/grafana_admin_password"
chmod 644 "$s/grafana_admin_password"
# As the containers' user (65534), readability is what open(2) says.
if command -v setpriv > /dev/null; then
  chmod 755 "$work" "$s"
  setpriv --reuid=65534 --regid=65534 --clear-groups bash compose/check-secrets.sh "$s" > /dev/null 2> "$work/secrets65534.err"
  expect "as user 65534: the mode 600 file is unreadable" has "$work/secrets65534.err" "^unreadable: compose/secrets/alertmanager_webhook_token"
fi

if [ "$failures" -ne 0 ]; then
  echo "check_compose_scripts: $failures failures" >&2
  exit 1
fi
echo "check_compose_scripts: all checks passed"
