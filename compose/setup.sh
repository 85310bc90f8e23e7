#!/usr/bin/env bash
# Prepares this host for the first `docker compose up`: finds the GPUs and the model servers,
# picks the compose profiles, writes compose/.env and the Prometheus target files to match, and
# creates the secret files it can (random ones where a value can be generated, placeholders
# where only you know the value, e.g. a PagerDuty key). Run it again after a change (a new GPU,
# a model server moved); it says what it found and what it changed.
#
#   compose/setup.sh [--root DIR] [--compose-dir DIR] [--targets-dir DIR]
#
# --root: where the host's / is (default /; tests pass a fake tree). --compose-dir: where .env
# and secrets/ go (default: this script's directory). --targets-dir: the Prometheus target files
# (default: prometheus/targets next to it). The previous .env is kept as .env.previous.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root=/
compose_dir="$here"
targets_dir="$here/../prometheus/targets"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --compose-dir) compose_dir="$2"; shift 2 ;;
    --targets-dir) targets_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
root="${root%/}"
say() { echo "setup: $*"; }
warn() { echo "setup: warning: $*" >&2; }

profiles=(monitoring)
nvidia_targets="[]"
rocm_targets="[]"
llama_targets="[]"
video_gid=44
render_gid=992

# --- GPUs: the same checks the one-shot services check-nvidia and check-rocm make.
if bash "$here/check-gpu.sh" nvidia "${root:-/}" > /dev/null 2>&1; then
  profiles+=(nvidia)
  nvidia_targets="- targets: ['nvidia-exporter:10471']
  labels: {instance: docker-host}"
  say "NVIDIA GPUs: the nvidia profile is on"
elif [ -e "$root/dev/nvidiactl" ]; then
  warn "an NVIDIA driver is here but the nvidia profile cannot start:"
  bash "$here/check-gpu.sh" nvidia "${root:-/}" 2>&1 | sed 's/^/    /' >&2 || true
else
  say "no NVIDIA GPU"
fi
if bash "$here/check-gpu.sh" rocm "${root:-/}" > /dev/null 2>&1; then
  profiles+=(rocm)
  rocm_targets="- targets: ['rocm-exporter:10472']
  labels: {instance: docker-host}"
  # The containers join the groups that own the device nodes on this host.
  for card in "$root"/dev/dri/card*; do [ -e "$card" ] && video_gid=$(stat -c %g "$card") && break; done
  for node in "$root"/dev/dri/renderD*; do [ -e "$node" ] && render_gid=$(stat -c %g "$node") && break; done
  say "AMD GPUs (amdgpu): the rocm profile is on (video group $video_gid, render group $render_gid)"
elif [ -e "$root/dev/kfd" ] || [ -d "$root/dev/dri" ]; then
  warn "GPU device nodes are here but the rocm profile cannot start:"
  bash "$here/check-gpu.sh" rocm "${root:-/}" 2>&1 | sed 's/^/    /' >&2 || true
else
  say "no AMD GPU"
fi

# --- Model servers listening on their default ports, from /proc/net/tcp{,6} (state 0A = LISTEN).
# Prints the local address of a listener on PORT: "any", "loopback" or "other"; nothing if none.
listener() {
  local port_hex
  port_hex=$(printf '%04X' "$1")
  # awk reads the files itself: a pipe from cat would die of SIGPIPE when awk is done early.
  local files=()
  for f in "$root/proc/net/tcp" "$root/proc/net/tcp6"; do [ -r "$f" ] && files+=("$f"); done
  [ "${#files[@]}" -gt 0 ] || return 0
  awk -v p="$port_hex" '
    $4 == "0A" {
      split($2, a, ":")
      if (toupper(a[2]) != p) next
      ip = toupper(a[1])
      if (ip ~ /^0+$/) { found = "any"; next }
      if (ip == "0100007F" || ip == "00000000000000000000000001000000") { if (found == "") found = "loopback"; next }
      if (found == "" || found == "loopback") found = "other"
    }
    END { if (found != "") print found }' "${files[@]}"
}
upstreams=()
proxies=()
for server in "ollama 11434 Ollama" "llama 8080 llama-server"; do
  read -r name port label <<< "$server"
  where=$(listener "$port")
  [ -n "$where" ] || { say "no $label on port $port"; continue; }
  upstreams+=("$name=http://host.docker.internal:$port")
  say "$label listens on port $port ($where)"
  if [ "$where" = loopback ]; then
    warn "$label listens on 127.0.0.1 only: the containers cannot reach it through host.docker.internal. Make it listen on all interfaces (Ollama: OLLAMA_HOST=0.0.0.0; llama-server: --host 0.0.0.0) or on the Docker bridge address, and keep the port closed to the LAN with a firewall"
  fi
  if [ "$name" = ollama ]; then proxies+=("ollama=:11435"); fi
  if [ "$name" = llama ]; then
    llama_targets="- targets: ['host.docker.internal:8080']
  labels: {instance: docker-host}"
  fi
done
if [ "${#upstreams[@]}" -eq 0 ]; then
  upstreams=("ollama=http://host.docker.internal:11434")
  proxies=("ollama=:11435")
  say "no model server found: llm-exporter will poll Ollama's default address (llm_up 0 until one answers)"
fi
[ "${#proxies[@]}" -gt 0 ] || proxies=("ollama=:11435")

# --- Is / a shared mount? host-exporter's rslave bind needs it.
mount_options="ro,rslave"
# rslave needs / shared or a slave (optional field master:N) of a shared mount.
if ! awk '$5 == "/" { for (i = 7; $i != "-"; i++) if ($i ~ /^(shared|master):/) s = 1 } END { exit !s }' \
    "$root/proc/self/mountinfo" 2>/dev/null; then
  mount_options="ro"
  warn "/ is not a shared mount here: host-exporter mounts it without rslave (filesystems mounted later show up after a restart of host-exporter)"
fi

# --- The host's name: the logs' `host` label and the GPU exporters' Hostname (inside a container
# the hostname is the container's id, and $HOSTNAME is seldom exported to compose).
host_name=$(tr -d '[:space:]' < "$root/proc/sys/kernel/hostname" 2>/dev/null || true)
[ -n "$host_name" ] || host_name=$(uname -n)

# --- compose/.env
mkdir -p "$compose_dir"
env_file="$compose_dir/.env"
[ -f "$env_file" ] && cp "$env_file" "$env_file.previous"
join() { local IFS=,; echo "$*"; }
cat > "$env_file" <<ENV
# Written by compose/setup.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); run it again after a change.
COMPOSE_PROFILES=$(join "${profiles[@]}")
LLM_UPSTREAMS=$(join "${upstreams[@]}")
LLM_PROXIES=$(join "${proxies[@]}")
VIDEO_GID=$video_gid
RENDER_GID=$render_gid
HOST_ROOT_MOUNT_OPTIONS=$mount_options
HOST_NAME=$host_name
ENV
say "wrote $env_file (profiles: $(join "${profiles[@]}"))"

# --- Prometheus targets
mkdir -p "$targets_dir"
write_targets() {
  printf '# Written by compose/setup.sh.\n%s\n' "$2" > "$targets_dir/$1.yml"
}
write_targets nvidia "$nvidia_targets"
write_targets rocm "$rocm_targets"
write_targets llama-server "$llama_targets"
say "wrote $targets_dir/{nvidia,rocm,llama-server}.yml"

# --- Secrets: generated where a value can be, placeholders elsewhere; never overwritten.
secrets="$compose_dir/secrets"
mkdir -p "$secrets"
chmod 700 "$secrets"
secret() { # NAME generate|placeholder WHAT
  local file="$secrets/$1"
  [ -s "$file" ] && return 0
  if [ "$2" = generate ]; then
    head -c 24 /dev/urandom | base64 | tr -d '\n/+=' > "$file"
    say "created $file (random)"
  else
    printf 'unconfigured' > "$file"
    warn "created $file with a placeholder: put $3 in it, or its notifications fail (logged by Alertmanager)"
  fi
  chmod 644 "$file"
}
secret grafana_admin_password generate
secret alertmanager_webhook_token generate
secret alertmanager_pagerduty_routing_key placeholder "your PagerDuty Events v2 integration key"
secret alertmanager_slack_webhook_url placeholder "your Slack or Mattermost incoming-webhook URL"
secret alertmanager_smtp_password placeholder "the SMTP password of the account in alertmanager/alertmanager.yml"
bash "$here/check-secrets.sh" "$secrets"
say "next: docker compose -f compose/compose.yaml up -d   (Compose v1: docker-compose -f compose/compose.yaml up -d)"
