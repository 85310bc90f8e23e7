#!/usr/bin/env bash
# Checks that a host has what a GPU profile of compose/compose.yaml needs, and says what is
# missing. Exit status 0 when it has it, 1 otherwise (2 for a usage error).
#
#   check-gpu.sh nvidia|rocm [ROOT]
#
# ROOT is where the host's / is seen: `/` on the host (compose/setup.sh), `/host` in the one-shot
# services check-nvidia and check-rocm, a fake tree in tests. Only device nodes, driver links in
# sysfs and program files are looked at; nothing is opened or run.
set -uo pipefail
profile="${1:-}"
root="${2:-/}"
root="${root%/}"
missing=()

case "$profile" in
  nvidia)
    # The driver's control device: without it NVML has no GPU to talk to.
    [ -e "$root/dev/nvidiactl" ] ||
      missing+=("no /dev/nvidiactl: the NVIDIA driver is not loaded on this host (nvidia-smi should list the GPUs)")
    # Docker's "nvidia" device driver (deploy.resources.reservations.devices) is the NVIDIA
    # Container Toolkit's prestart hook; without it Docker says "could not select device driver".
    if [ ! -e "$root/usr/bin/nvidia-container-runtime-hook" ] && [ ! -e "$root/usr/bin/nvidia-ctk" ]; then
      missing+=("no NVIDIA Container Toolkit (/usr/bin/nvidia-container-runtime-hook): install the package nvidia-container-toolkit and restart Docker")
    fi
    ;;
  rocm)
    [ -e "$root/dev/kfd" ] ||
      missing+=("no /dev/kfd: the amdgpu driver is not loaded with ROCm's kernel fusion driver (kfd) on this host")
    renders=("$root"/dev/dri/renderD*)
    [ -e "${renders[0]}" ] ||
      missing+=("no /dev/dri/renderD*: no GPU with a render node on this host")
    amd=0
    for card in "$root"/sys/class/drm/card[0-9]*; do
      driver=$(readlink "$card/device/driver" 2>/dev/null) || continue
      [ "${driver##*/}" = amdgpu ] && amd=1
    done
    [ "$amd" -eq 1 ] ||
      missing+=("no card driven by amdgpu under /sys/class/drm")
    ;;
  *)
    echo "usage: check-gpu.sh nvidia|rocm [ROOT]" >&2
    exit 2
    ;;
esac

if [ "${#missing[@]}" -gt 0 ]; then
  echo "the $profile profile cannot start on this host:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "Leave the $profile profile out (compose/setup.sh picks the profiles that fit this host), or see docs/stack.md, \"GPU profiles\"." >&2
  exit 1
fi
echo "the $profile profile has what it needs on this host"
