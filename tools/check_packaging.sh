#!/usr/bin/env bash
# Checks of the per-host and fleet packaging (issue 7), in one run; exits non-zero on any failure.
#
#   tools/check_packaging.sh            everything (run as root: it installs and purges the .debs)
#
# For every exporter crate of the workspace (members of Cargo.toml with a binary):
#   1. self-test: each check below is first shown to reject a broken input
#   2. systemd: `systemd-analyze verify` (any warning fails), `systemd-analyze security` exposure
#      at most $MAX_EXPOSURE tenths, and the hardening policy (own user, ProtectSystem=strict,
#      ProtectHome, NoNewPrivileges, PrivateTmp, Restart=on-failure, minimal devices)
#   3. Debian package: builds (dpkg-deb from a staged tree), installs with dpkg -i on this
#      machine, creates its system user, enables the unit, the installed unit verifies, the
#      installed exporter starts as that user with the default config from /etc (on a free
#      loopback port) and answers /metrics; dpkg -r keeps config and user, dpkg --purge leaves
#      no file, no enablement symlink, no user or group behind
#   4. plain-file binaries: host-, rocm- and llm-exporter fully static for
#      x86_64-unknown-linux-musl (`file`/`ldd` say static, --version, a scrape, no C library
#      needed); nvidia-exporter a dynamic glibc binary (it dlopens the driver's glibc-linked
#      libnvidia-ml, which a musl or static binary cannot do soundly) needing only glibc's own
#      libraries, at most GLIBC_$GLIBC_FLOOR, and loading a fake libnvidia-ml; a tarball each
#   5. Kubernetes: manifests validate offline (Kubernetes OpenAPI schemas via kubernetes-validate,
#      strict; the Prometheus Operator's ServiceMonitor/PrometheusRule via vendored JSON
#      schemas), cross-checks (selectors, ports, GPU node affinity, job names = prometheus.yml's),
#      the PrometheusRule generated from prometheus/ carries exactly its rules, promtool accepts
#      them (where promtool is installed)
#
# Needs: cargo, python3 (PyYAML, jsonschema, kubernetes-validate: pip-installed when missing),
# dpkg-deb, dpkg-shlibdeps (dpkg-dev), systemd-analyze (systemd), adduser, curl, file, runuser,
# objdump (binutils), the Rust target x86_64-unknown-linux-musl (added with rustup when missing)
# and a C compiler for it (x86_64-linux-musl-gcc or musl-gcc: Debian's musl-tools; ring has C).
# Optional: kubectl (kustomize rendering is compared), promtool, cc (fake NVML for
# nvidia-exporter's plain-file binary). Build output goes to $CARGO_TARGET_DIR (default: target/), packages and
# tarballs to $CARGO_TARGET_DIR/packaging/.
set -uo pipefail

# The whole script is one compound command, read before it runs: editing the file during a run
# cannot change what the run does.
{
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
out_dir=$target_dir/packaging
helper=$root/tools/check_packaging/checks.py
# systemd-analyze's --threshold is in tenths of its 0-10 exposure scale: 25 means 2.5.
MAX_EXPOSURE=${MAX_EXPOSURE:-25}
static_triple=x86_64-unknown-linux-musl
# The newest glibc symbol version nvidia-exporter's plain-file binary may need; docs/install.md
# states it (Rust's std on Debian 12 needs 2.34: Debian 12, Ubuntu 22.04, RHEL 9 and newer).
GLIBC_FLOOR=${GLIBC_FLOOR:-2.34}

failures=0
passes=0
pass() { passes=$((passes + 1)); echo "ok   $*"; }
fail() { failures=$((failures + 1)); echo "FAIL $*"; }
note() { echo "---- $*"; }

work=$(mktemp -d /tmp/check-packaging.XXXXXX)
started_pids=()
installed_pkgs=()
cleanup() {
  local pid pkg
  for pid in "${started_pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${started_pids[@]}"; do wait "$pid" 2>/dev/null; done
  for pkg in "${installed_pkgs[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'installed\|config-files'; then
      echo "cleanup: purging $pkg"
      dpkg --purge "$pkg" >/dev/null 2>&1
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ prerequisites
missing=()
for tool in cargo python3 dpkg dpkg-deb dpkg-shlibdeps systemd-analyze adduser curl file runuser objdump; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "FAIL missing tools: ${missing[*]} (apt-get install dpkg-dev systemd adduser curl file util-linux binutils)"
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "FAIL run as root: the packages are installed and purged with dpkg on this machine"
  exit 1
fi
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
python3 -c 'import yaml, jsonschema' 2>/dev/null || pip_install pyyaml jsonschema
python3 -c 'import kubernetes_validate' 2>/dev/null || pip_install 'kubernetes-validate>=1.29'
if ! python3 -c 'import yaml, jsonschema, kubernetes_validate' 2>/dev/null; then
  echo "FAIL python modules yaml, jsonschema, kubernetes_validate could not be installed"
  exit 1
fi

# dpkg with a wait for its lock (someone else's apt run), 120 s at most.
dpkg_locked() {
  local i rc
  for i in $(seq 1 60); do
    dpkg "$@"; rc=$?
    [ "$rc" -eq 2 ] || return "$rc"
    grep -q 'lock' "$work/dpkg.log" 2>/dev/null || return "$rc"
    sleep 2
  done
  return "$rc"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Extra flags an exporter needs to start without its packaged config (the static binary run:
# llm-exporter refuses to start without an upstream).
start_flags() {
  case "$1" in
    llm-exporter) echo "--upstream=local=http://127.0.0.1:9" ;;
    *) echo "" ;;
  esac
}

# wait_scrape URL LOG PID -> 0 once URL answers 200 with a build_info series
wait_scrape() {
  local url=$1 log=$2 pid=$3 name=$4 i
  local metric="${name//-/_}_build_info"
  for i in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "     exited early; its log:"; sed 's/^/     | /' "$log" | tail -15
      return 1
    fi
    if curl -fsS --max-time 5 -o "$work/scrape" "$url" 2>/dev/null; then
      if grep -q "^$metric{" "$work/scrape" && grep -q '^# TYPE ' "$work/scrape"; then
        return 0
      fi
      echo "     $url answered without $metric:"; head -5 "$work/scrape" | sed 's/^/     | /'
      return 1
    fi
    sleep 0.1
  done
  echo "     no answer from $url in 10 s; log:"; sed 's/^/     | /' "$log" | tail -15
  return 1
}

stop_pid() {
  local pid=$1 p keep=()
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  for p in "${started_pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  started_pids=("${keep[@]}")
}

# static_problem BIN -> prints why BIN is not a fully static binary (nothing when it is).
static_problem() {
  local desc ldd_out
  desc=$(file -b "$1"); ldd_out=$(ldd "$1" 2>&1)
  if ! echo "$desc" | grep -Eq 'statically linked|static-pie linked' || ! echo "$ldd_out" | grep -Eq 'not a dynamic executable|statically linked'; then
    echo "file: $desc; ldd: $(echo "$ldd_out" | tr '\n' ' ')"
  fi
}

# glibc_problem BIN FLOOR -> prints why BIN is not a dynamic glibc binary that needs only glibc's
# own libraries and at most GLIBC_FLOOR (nothing when it is).
glibc_problem() {
  local bin=$1 floor=$2 desc others need
  desc=$(file -b "$bin")
  others=$(ldd "$bin" 2>&1 | awk '{print $1}' | grep -Ev '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|lib(c|m|dl|rt|pthread|gcc_s)\.so\.[0-9]+)$' || true)
  need=$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  if ! echo "$desc" | grep -q 'dynamically linked'; then
    echo "not a dynamically linked binary: $desc"
  elif [ -n "$others" ]; then
    echo "links libraries beyond glibc's: $(echo "$others" | tr '\n' ' ')"
  elif [ -z "$need" ] || [ "$(printf '%s\n%s\n' "$need" "$floor" | sort -V | tail -1)" != "$floor" ]; then
    echo "needs GLIBC_${need:-?}, newer than the floor $floor"
  fi
}

# check_maintainer_scripts NAME DEB: what postinst/prerm/postrm ask of systemd, with and without
# a running systemd (recorded calls, nothing executed).
check_maintainer_scripts() {
  local name=$1 deb=$2 ms=$work/maint-$1 t ok=1
  rm -rf "$ms"; mkdir -p "$ms/bin"
  dpkg-deb -e "$deb" "$ms/DEBIAN"
  for t in deb-systemd-helper deb-systemd-invoke systemctl adduser addgroup deluser delgroup getent rmdir; do
    printf '#!/bin/sh\necho "%s $*" >> "%s/calls"\n[ "%s" != getent ]\n' "$t" "$ms" "$t" > "$ms/bin/$t"
    chmod +x "$ms/bin/$t"
  done
  run_ms() { # with-systemd(0/1) script args...
    local sd=$1; shift
    : > "$ms/calls"
    if [ "$sd" = 1 ]; then
      unshare -m sh -c 'mount -t tmpfs none /run/systemd 2>/dev/null || mount -t tmpfs none /run || exit 99
        mkdir -p /run/systemd/system && PATH="$0:$PATH" exec sh "$@"' "$ms/bin" "$ms/DEBIAN/$@" >/dev/null 2>&1
    else
      PATH="$ms/bin:$PATH" sh "$ms/DEBIAN/$@" >/dev/null 2>&1
    fi
  }
  expect() { # label pattern...: every pattern is among the recorded calls
    local label=$1 p; shift
    for p in "$@"; do
      grep -qx -- "$p" "$ms/calls" || { echo "     $label: no call '$p'; calls were:"; sed 's/^/     | /' "$ms/calls"; ok=0; }
    done
  }
  absent() {
    local label=$1 p; shift
    for p in "$@"; do
      grep -q -- "$p" "$ms/calls" && { echo "     $label: unexpected call matching '$p'"; ok=0; }
    done
  }
  if ! command -v unshare >/dev/null || ! unshare -m true 2>/dev/null; then
    note "$name: maintainer scripts under systemd not checked (no unshare -m here)"
    return
  fi
  run_ms 1 postinst configure; expect "postinst configure (systemd)" \
    "addgroup --system --quiet $name" \
    "deb-systemd-helper enable $name.service" "systemctl --system daemon-reload" \
    "deb-systemd-invoke start $name.service"
  grep -q "^adduser --system .* $name\$" "$ms/calls" || { echo "     postinst: no system user created"; ok=0; }
  run_ms 1 postinst configure 0.0.9; expect "postinst upgrade (systemd)" "deb-systemd-invoke restart $name.service"
  run_ms 0 postinst configure; expect "postinst configure (no systemd)" "deb-systemd-helper enable $name.service"
  absent "postinst configure (no systemd)" "^systemctl" "^deb-systemd-invoke"
  run_ms 1 prerm remove; expect "prerm remove (systemd)" "deb-systemd-invoke stop $name.service"
  run_ms 1 postrm remove; expect "postrm remove" "deb-systemd-helper mask $name.service"
  run_ms 1 postrm purge; expect "postrm purge" "deb-systemd-helper purge $name.service" "deb-systemd-helper unmask $name.service"
  if [ "$ok" = 1 ]; then
    pass "$name: maintainer scripts: enable + start on install, restart on upgrade, stop on remove, purge state (with systemd); enable only (without)"
  else
    fail "$name: maintainer scripts"
  fi
}

# ------------------------------------------------------------------ exporters
mapfile -t exporter_lines < <(python3 "$helper" exporters "$root")
if [ "${#exporter_lines[@]}" -eq 0 ]; then
  echo "FAIL no exporter crate found in the workspace"
  exit 1
fi
exporters=()
declare -A version_of
for line in "${exporter_lines[@]}"; do
  exporters+=("${line%% *}")
  version_of[${line%% *}]=${line#* }
done
note "exporters: ${exporters[*]}"

# ------------------------------------------------------------------ 1. self-test
note "self-test: each check rejects a broken input"
if python3 "$helper" self-test "$root" > "$work/selftest.log" 2>&1; then
  pass "self-test ($(grep -c 'caught:' "$work/selftest.log") broken inputs rejected)"
else
  cat "$work/selftest.log"; fail "self-test"
fi
# systemd-analyze verify reports bad lines as warnings with exit status 0: the check must treat
# any output as a failure. Show that it does on a unit with a typo.
printf '[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\nNoNewPrivileges=maybe\nProtectSystm=strict\n' > "$work/broken.service"
if [ -n "$(systemd-analyze verify "$work/broken.service" 2>&1)" ]; then
  pass "self-test: systemd-analyze verify reports a unit with a typo"
else
  fail "self-test: systemd-analyze verify is silent on a broken unit: the verify check could not fail"
fi
printf '[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n' > "$work/bare.service"
# It must be rejected for its score, not because the command itself failed.
bare=$(systemd-analyze security --offline=yes --threshold="$MAX_EXPOSURE" "$work/bare.service" 2>&1)
if [ $? -ne 0 ] && echo "$bare" | grep -q 'Overall exposure level'; then
  pass "self-test: an unhardened unit is above the exposure threshold $MAX_EXPOSURE/10"
else
  fail "self-test: an unhardened unit passes the exposure threshold"
fi

# The plain-file binary checks: a dynamic binary is not static, a static one is not the glibc
# binary, and a glibc floor below what a binary needs is reported.
# coreutils' true: dynamic, linked to libc only; ls: also to libselinux.
probe=/usr/bin/true
if [ -n "$(static_problem "$probe")" ] && [ -n "$(glibc_problem "$probe" 2.0)" ] && [ -z "$(glibc_problem "$probe" 99.0)" ] &&
  { [ ! -x /usr/bin/ls ] || ! ldd /usr/bin/ls | grep -q libselinux || [ -n "$(glibc_problem /usr/bin/ls 99.0)" ]; }; then
  pass "self-test: the static check rejects a dynamic binary, the glibc check a floor below the need and a library beyond glibc's"
else
  fail "self-test: the static or glibc-floor check cannot fail"
fi

# ------------------------------------------------------------------ build
note "building release binaries (glibc for the .debs, static musl for the tarballs) into $target_dir"
build() { # build LABEL cargo-args... (the crates in build_set); per crate when the whole set fails
  local label=$1; shift
  local pkgs=() e
  for e in "${build_set[@]}"; do pkgs+=(-p "$e"); done
  if cargo build --release --locked "$@" "${pkgs[@]}" > "$work/build-$label.log" 2>&1; then
    return 0
  fi
  note "$label build of all exporters failed; building one by one"
  for e in "${build_set[@]}"; do
    cargo build --release --locked "$@" -p "$e" >> "$work/build-$label.log" 2>&1 ||
      { tail -20 "$work/build-$label.log"; fail "$e: $label release build"; }
  done
}
# A failed build leaves the last good binaries and artefacts behind: remove them first, so that
# nothing below checks or ships an old one.
for e in "${exporters[@]}"; do
  rm -f "$target_dir/release/$e" "$target_dir/$static_triple/release/$e" \
    "$out_dir/$e-${version_of[$e]}.linux-amd64.tar.gz" "$out_dir/${e}_${version_of[$e]}-1_amd64.deb"
done
build_set=("${exporters[@]}")
build dynamic
# Static: every exporter but nvidia-exporter, for musl. The target comes from rustup when it is
# missing; ring's C and assembly need a musl C compiler (Debian: musl-tools).
build_set=()
for e in "${exporters[@]}"; do [ "$e" = nvidia-exporter ] || build_set+=("$e"); done
musl_ready=1
musl_unavailable=0
if ! rustup target list --installed 2>/dev/null | grep -qx "$static_triple"; then
  if command -v rustup >/dev/null && rustup target add "$static_triple" > "$work/rustup.log" 2>&1; then
    note "added the Rust target $static_triple with rustup"
  else
    # Fetching a Rust target is the one download outside the package registries: where it is
    # refused, say so loudly and check everything else, rather than fail for the network.
    tail -5 "$work/rustup.log" 2>/dev/null
    echo "SKIP static musl binaries: the Rust target $static_triple is not installed and 'rustup target add $static_triple' failed (no rustup, or no network)"
    musl_ready=0
    musl_unavailable=1
  fi
fi
musl_cc=$(command -v x86_64-linux-musl-gcc || command -v musl-gcc || true)
if [ -z "$musl_cc" ]; then
  fail "no C compiler for $static_triple (x86_64-linux-musl-gcc or musl-gcc; Debian: apt-get install musl-tools): no static binaries"
  musl_ready=0
fi
if [ "$musl_ready" = 1 ] && [ "${#build_set[@]}" -gt 0 ]; then
  CC_x86_64_unknown_linux_musl=$musl_cc build static --target "$static_triple"
fi
mkdir -p "$out_dir"

# ------------------------------------------------------------------ per exporter
for name in "${exporters[@]}"; do
  version=${version_of[$name]}
  bin=$target_dir/release/$name
  sbin=$target_dir/$static_triple/release/$name   # nvidia-exporter: $bin, see 4.
  unit=$root/packaging/systemd/$name.service
  note "$name $version"

  # -- 2. systemd unit
  if [ ! -f "$unit" ]; then
    fail "$name: no unit packaging/systemd/$name.service"
  else
    if out=$(python3 "$helper" unit-policy "$unit" "$name" 2>&1); then
      pass "$name: unit hardening policy"
    else
      echo "$out"; fail "$name: unit hardening policy"
    fi
    # Verify against the built binary (the ExecStart path is the only change).
    if [ -x "$bin" ]; then
      sed "s#/usr/bin/$name#$bin#g" "$unit" > "$work/$name.service"
      out=$(systemd-analyze verify "$work/$name.service" 2>&1); rc=$?
      if [ "$rc" -eq 0 ] && [ -z "$out" ]; then pass "$name: systemd-analyze verify"; else echo "$out"; fail "$name: systemd-analyze verify"; fi
      exposure=$(systemd-analyze security --offline=yes --threshold="$MAX_EXPOSURE" "$work/$name.service" 2>&1); rc=$?
      level=$(echo "$exposure" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
      if [ "$rc" -eq 0 ] && [ -n "$level" ]; then pass "$name: systemd-analyze security exposure $level (at most $MAX_EXPOSURE/10)"
      else echo "$exposure" | tail -5; fail "$name: systemd-analyze security exposure ${level:-?} above $MAX_EXPOSURE/10"; fi
    fi
  fi

  # -- 3. Debian package
  if [ ! -x "$bin" ]; then
    fail "$name: no release binary, no package"
  elif dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'installed\|config-files'; then
    fail "$name: a package $name is already installed here; not touching it (dpkg --purge $name first)"
  elif getent passwd "$name" >/dev/null || getent group "$name" >/dev/null; then
    fail "$name: a user or group $name already exists; the package's user handling cannot be checked"
  elif ! deb=$("$root/packaging/build-deb.sh" "$name" "$bin" "$out_dir" 2> "$work/deb.log"); then
    cat "$work/deb.log"; fail "$name: .deb build"
  else
    pass "$name: built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
    contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's#^\./#/#')
    ok=1
    for path in /usr/bin/$name /usr/lib/systemd/system/$name.service /etc/$name/config.toml /etc/default/$name; do
      echo "$contents" | grep -qx "$path" || { echo "     missing $path"; ok=0; }
    done
    [ "$(dpkg-deb -f "$deb" Package)" = "$name" ] || { echo "     wrong Package field"; ok=0; }
    dpkg-deb -I "$deb" conffiles 2>/dev/null | grep -qx "/etc/$name/config.toml" || { echo "     config.toml is not a conffile"; ok=0; }
    [ "$ok" = 1 ] && pass "$name: package contents (binary, unit, conffiles)" || fail "$name: package contents"

    # The maintainer scripts' systemd branch, which this machine (no running systemd) cannot
    # reach through dpkg: run the package's own scripts in a private mount namespace where
    # /run/systemd/system exists, with the tools they call replaced by recorders.
    check_maintainer_scripts "$name" "$deb"

    # Snapshot of what a package may touch, to compare after purge.
    snapshot() { find /etc /usr /var/lib/systemd /opt -xdev 2>/dev/null | LC_ALL=C sort; }
    snapshot > "$work/before"
    installed_pkgs+=("$name")
    if ! dpkg_locked -i "$deb" > "$work/dpkg.log" 2>&1; then
      cat "$work/dpkg.log"; fail "$name: dpkg -i"
    else
      pass "$name: dpkg -i"
      # System user, no login, no home.
      if entry=$(getent passwd "$name"); then
        shell=${entry##*:}; uid=$(echo "$entry" | cut -d: -f3)
        if [ "$uid" -lt 1000 ] && [ "$shell" = /usr/sbin/nologin ] && getent group "$name" >/dev/null; then
          pass "$name: system user $name (uid $uid, nologin) and group"
        else
          fail "$name: user $name is not a system user with nologin: $entry"
        fi
      else
        fail "$name: postinst created no user $name"
      fi
      if [ "$name" = rocm-exporter ]; then
        for g in render video; do
          if getent group "$g" >/dev/null && ! id -nG "$name" | tr ' ' '\n' | grep -qx "$g"; then
            fail "$name: not in group $g, which owns the GPU device nodes"
          fi
        done
      fi
      if [ -L "/etc/systemd/system/multi-user.target.wants/$name.service" ]; then
        pass "$name: unit enabled (multi-user.target.wants symlink)"
      else
        fail "$name: unit not enabled on install"
      fi
      out=$(systemd-analyze verify "/usr/lib/systemd/system/$name.service" 2>&1); rc=$?
      if [ "$rc" -eq 0 ] && [ -z "$out" ]; then pass "$name: installed unit verifies"; else echo "$out"; fail "$name: installed unit verify"; fi
      # The installed exporter, as its user, with the packaged default config (only the
      # listen address moved to a free loopback port).
      port=$(free_port)
      runuser -u "$name" -- "/usr/bin/$name" --config.file="/etc/$name/config.toml" \
        --web.listen-address="127.0.0.1:$port" > "$work/run.log" 2>&1 &
      pid=$!; started_pids+=("$pid")
      if wait_scrape "http://127.0.0.1:$port/metrics" "$work/run.log" "$pid" "$name"; then
        pass "$name: installed exporter runs as $name with /etc/$name/config.toml and answers /metrics ($(grep -vc '^#' "$work/scrape") samples)"
      else
        fail "$name: installed exporter does not answer /metrics"
      fi
      stop_pid "$pid"
      # Remove: config and user stay (as documented), the binary and unit go.
      if dpkg_locked -r "$name" > "$work/dpkg.log" 2>&1 && [ ! -e "/usr/bin/$name" ] && [ -f "/etc/$name/config.toml" ] && getent passwd "$name" >/dev/null; then
        pass "$name: dpkg -r removes the binary, keeps the configuration and the user"
      else
        cat "$work/dpkg.log"; fail "$name: dpkg -r"
      fi
      # Purge: nothing left.
      if dpkg_locked --purge "$name" > "$work/dpkg.log" 2>&1; then
        left=()
        for path in $(echo "$contents" | grep -v '/$') /etc/$name /usr/share/doc/$name \
          /etc/systemd/system/$name.service /etc/systemd/system/multi-user.target.wants/$name.service; do
          if [ -e "$path" ] || [ -L "$path" ]; then left+=("$path"); fi
        done
        getent passwd "$name" >/dev/null && left+=("user $name")
        getent group "$name" >/dev/null && left+=("group $name")
        dpkg-query -W "$name" >/dev/null 2>&1 && dpkg-query -W -f='${Status}' "$name" | grep -qv 'not-installed' && left+=("dpkg still knows $name")
        snapshot > "$work/after"
        added=$(LC_ALL=C comm -13 "$work/before" "$work/after")
        mine=$(echo "$added" | grep -F "$name" || true)
        if [ "${#left[@]}" -eq 0 ] && [ -z "$mine" ]; then
          pass "$name: dpkg --purge leaves no file, symlink, user or group"
        else
          echo "     left behind: ${left[*]} $mine"; fail "$name: dpkg --purge left things behind"
        fi
        other=$(echo "$added" | grep -v '^$' | grep -vF "$name" | head -5)
        [ -n "$other" ] && note "$name: files that appeared meanwhile (not named after the package; someone else?): $other"
      else
        cat "$work/dpkg.log"; fail "$name: dpkg --purge"
      fi
    fi
  fi

  # -- 4. plain-file binary: static musl, or (nvidia-exporter) dynamic glibc
  if [ "$name" = nvidia-exporter ]; then sbin=$bin; kind=glibc; else kind=static; fi
  if [ "$kind" = static ] && [ "$musl_unavailable" = 1 ]; then
    echo "SKIP $name: static binary (no $static_triple target, see above)"
  elif [ ! -x "$sbin" ]; then
    fail "$name: no $kind binary"
  else
    if [ "$kind" = static ]; then
      if why=$(static_problem "$sbin") && [ -z "$why" ]; then
        desc=$(file -b "$sbin")
        pass "$name: static binary for $static_triple ($(du -k "$sbin" | cut -f1) KiB): ${desc%%,*}, $(echo "$desc" | grep -o 'static[^,]*linked')"
      else
        echo "     $why"; fail "$name: binary is not static"
      fi
    else
      # Only glibc's own libraries (and libgcc_s, on every glibc system); libnvidia-ml is
      # dlopened at run time, never linked.
      if why=$(glibc_problem "$sbin" "$GLIBC_FLOOR") && [ -z "$why" ]; then
        need=$(objdump -T "$sbin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
        pass "$name: dynamic glibc binary ($(du -k "$sbin" | cut -f1) KiB), only glibc's libraries, needs glibc $need (floor $GLIBC_FLOOR, docs/install.md)"
      else
        fail "$name: plain-file binary: $why"
      fi
    fi
    if v=$("$sbin" --version 2>&1) && echo "$v" | grep -q "$version"; then
      pass "$name: $kind --version: $v"
    else
      echo "     $v"; fail "$name: $kind --version"
    fi
    port=$(free_port)
    # shellcheck disable=SC2046
    env -i PATH=/usr/bin:/bin "$sbin" --web.listen-address="127.0.0.1:$port" $(start_flags "$name") > "$work/run.log" 2>&1 &
    pid=$!; started_pids+=("$pid")
    if wait_scrape "http://127.0.0.1:$port/metrics" "$work/run.log" "$pid" "$name"; then
      pass "$name: $kind binary answers /metrics"
    else
      fail "$name: $kind binary does not answer /metrics"
    fi
    stop_pid "$pid"
    # The plain-file distribution, node_exporter style.
    tdir=$work/$name-$version.linux-amd64
    mkdir -p "$tdir"
    cp "$sbin" "$tdir/$name"
    [ -f "$unit" ] && cp "$unit" "$tdir/"
    [ -f "$root/packaging/etc/$name/config.toml" ] && cp "$root/packaging/etc/$name/config.toml" "$tdir/"
    cp "$root/README.md" "$tdir/"
    [ -f "$root/docs/install.md" ] && cp "$root/docs/install.md" "$tdir/"
    tar -C "$work" --owner=0 --group=0 -czf "$out_dir/$name-$version.linux-amd64.tar.gz" "$name-$version.linux-amd64"
    rm -rf "$tdir"
  fi
done

# nvidia-exporter's plain-file binary loads libnvidia-ml with dlopen: show that it does, with the
# fake libnvidia-ml of the nvidia-exporter tests.
fake_src=$root/nvidia-exporter/tests/fake-nvml/fake_nvml.c
scenario=$root/nvidia-exporter/tests/fake-nvml/scenarios/fleet.scn
sbin=$target_dir/release/nvidia-exporter
if [ -x "$sbin" ] && [ -f "$fake_src" ] && [ -f "$scenario" ] && command -v cc >/dev/null; then
  if cc -shared -fPIC -O1 -pthread -Wl,-z,nodelete -o "$work/libnvidia-ml.so.1" "$fake_src" 2> "$work/cc.log"; then
    port=$(free_port)
    FAKE_NVML_SCENARIO=$scenario "$sbin" --web.listen-address="127.0.0.1:$port" \
      --nvml.library="$work/libnvidia-ml.so.1" > "$work/run.log" 2>&1 &
    pid=$!; started_pids+=("$pid")
    if wait_scrape "http://127.0.0.1:$port/metrics" "$work/run.log" "$pid" nvidia-exporter &&
      grep -q '^nvidia_up 1' "$work/scrape" && grep -q '^gpu_info{' "$work/scrape"; then
      pass "nvidia-exporter: plain-file (glibc) binary loads libnvidia-ml (fake, $(grep -c '^gpu_info{' "$work/scrape") GPUs) through dlopen"
    else
      grep -E '^nvidia_(up|down_reason)' "$work/scrape" 2>/dev/null | head -3
      fail "nvidia-exporter: plain-file (glibc) binary cannot use libnvidia-ml through dlopen"
    fi
    stop_pid "$pid"
  else
    cat "$work/cc.log"; fail "nvidia-exporter: building the fake libnvidia-ml"
  fi
else
  note "nvidia-exporter: dlopen check skipped (needs the release binary, cc and nvidia-exporter/tests/fake-nvml)"
fi

# ------------------------------------------------------------------ 5. Kubernetes
note "kubernetes manifests"
prom_dir=$root/prometheus
rule_json=$work/prometheusrule.json
has_rules=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import checks; print(len(checks.rule_groups_of_dir(sys.argv[2])))' \
  "$root/tools/check_packaging" "$prom_dir" 2>/dev/null || echo 0)
if [ "$has_rules" -gt 0 ]; then
  if python3 "$root/deploy/kubernetes/generate-prometheusrule.py" -o "$rule_json" 2> "$work/gen.log"; then
    pass "PrometheusRule generated from prometheus/ ($has_rules groups)"
    if out=$(python3 "$helper" rules-equal "$rule_json" "$prom_dir" 2>&1); then pass "$out"; else echo "$out"; fail "PrometheusRule does not carry exactly the rules of prometheus/"; fi
    if command -v promtool >/dev/null; then
      python3 "$helper" rules-to-file "$rule_json" "$work/from-prometheusrule.yml"
      if out=$(promtool check rules "$work/from-prometheusrule.yml" 2>&1); then
        pass "promtool check rules on the PrometheusRule's groups"
      else
        echo "$out" | tail -10; fail "promtool rejects the PrometheusRule's groups"
      fi
    else
      note "promtool not installed: its check of the PrometheusRule's groups skipped"
    fi
  else
    cat "$work/gen.log"; fail "PrometheusRule generation from prometheus/"
    rule_json=
  fi
else
  # Still prove the generator on a rule file of our own (the self-test does the same with
  # mutations).
  note "prometheus/ has no rule files yet: generator checked on a rule file of its own"
  mkdir -p "$work/prom/rules"
  printf 'groups:\n  - name: t\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 5m\n' > "$work/prom/rules/t.yml"
  if python3 "$root/deploy/kubernetes/generate-prometheusrule.py" --prometheus-dir "$work/prom" -o "$rule_json" &&
    python3 "$helper" rules-equal "$rule_json" "$work/prom" >/dev/null; then
    pass "PrometheusRule generated from a sample rule directory carries its rules"
  else
    fail "PrometheusRule generation on a sample rule directory"
  fi
fi
if out=$(python3 "$helper" k8s "$root" "${rule_json:-}" 2>&1); then
  pass "kubernetes manifests validate offline (Kubernetes schemas, strict; ServiceMonitor/PrometheusRule schemas) and cross-check"
else
  echo "$out"; fail "kubernetes manifests"
fi
if command -v kubectl >/dev/null; then
  if kubectl kustomize "$root/deploy/kubernetes" > "$work/kustomized.yaml" 2> "$work/kustomize.log"; then
    n=$(grep -c '^kind:' "$work/kustomized.yaml")
    pass "kubectl kustomize deploy/kubernetes renders ($n objects)"
  else
    cat "$work/kustomize.log"; fail "kubectl kustomize deploy/kubernetes"
  fi
fi

# ------------------------------------------------------------------ summary
note "artifacts in $out_dir:"
ls -l "$out_dir" 2>/dev/null | awk 'NR>1 {printf "     %8d KiB  %s\n", $5/1024, $9}'
echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
exit
}
