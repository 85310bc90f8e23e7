#!/usr/bin/env bash
# Builds the Debian package of one exporter from a staged tree with dpkg-deb (no debhelper,
# no cargo-deb): the release binary, its systemd unit, its default configuration under /etc
# (conffiles), and the maintainer scripts that create the system user and enable the unit.
#
#   packaging/build-deb.sh NAME BINARY OUTDIR     -> prints the path of OUTDIR/NAME_VERSION_ARCH.deb
#
# NAME is the workspace crate (and binary, user, unit and package name); BINARY the built
# executable (normally target/release/NAME). Version and description come from cargo metadata.
set -euo pipefail

name=${1:?usage: build-deb.sh NAME BINARY OUTDIR}
binary=${2:?usage: build-deb.sh NAME BINARY OUTDIR}
outdir=${3:?usage: build-deb.sh NAME BINARY OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

for f in "$here/systemd/$name.service" "$here/etc/$name/config.toml" "$here/etc/default/$name"; do
  [ -f "$f" ] || { echo "build-deb: $name has no $f: add its unit and default configuration" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "build-deb: $binary is not an executable" >&2; exit 1; }

read -r version description < <(cd "$root" && cargo metadata --no-deps --format-version 1 --offline 2>/dev/null |
  python3 -c 'import json,sys
name=sys.argv[1]
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == name:
        print(p["version"], p.get("description") or name)
        break
else:
    sys.exit("build-deb: no crate named " + name)' "$name")
debversion="${version}-${DEB_REVISION:-1}"
arch=$(dpkg --print-architecture)

# Devices this exporter reads belong to these groups on Debian and Ubuntu.
case "$name" in
  rocm-exporter) extra_groups="render video" ;;
  *) extra_groups="" ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/$name"
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/systemd/system" \
  "$pkg/etc/$name" "$pkg/etc/default" "$pkg/usr/share/doc/$name"
install -m 0755 "$binary" "$pkg/usr/bin/$name"
install -m 0644 "$here/systemd/$name.service" "$pkg/usr/lib/systemd/system/$name.service"
install -m 0644 "$here/etc/$name/config.toml" "$pkg/etc/$name/config.toml"
install -m 0644 "$here/etc/default/$name" "$pkg/etc/default/$name"
install -m 0644 "$root/README.md" "$pkg/usr/share/doc/$name/README.md"
[ -f "$root/$name/README.md" ] && install -m 0644 "$root/$name/README.md" "$pkg/usr/share/doc/$name/README.$name.md"
[ -f "$root/docs/install.md" ] && install -m 0644 "$root/docs/install.md" "$pkg/usr/share/doc/$name/install.md"
license=$(cd "$root" && sed -n 's/^license *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
cat > "$pkg/usr/share/doc/$name/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $name

Files: *
License: ${license:-Apache-2.0}
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

for script in postinst prerm postrm; do
  sed -e "s/@NAME@/$name/g" -e "s/@EXTRA_GROUPS@/$extra_groups/g" "$here/debian/$script.in" > "$pkg/DEBIAN/$script"
  chmod 0755 "$pkg/DEBIAN/$script"
done
printf '/etc/%s/config.toml\n/etc/default/%s\n' "$name" "$name" > "$pkg/DEBIAN/conffiles"

# Shared-library dependencies as dpkg-shlibdeps computes them for any Debian package (it wants
# a debian/control beside it; a minimal one is enough). A static binary has none.
shlibs=$(cd "$stage" && mkdir -p debian && printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$name" "$name" > debian/control &&
  dpkg-shlibdeps -O "$pkg/usr/bin/$name" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
depends="adduser${shlibs:+, $shlibs}"

installed_size=$(du -k -s --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: $name
Version: $debversion
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-Local LLM host exporters maintainers <maintainers@exporters.invalid>}
Installed-Size: $installed_size
Depends: $depends
Section: net
Priority: optional
Description: Prometheus exporter $name
 $description.
 .
 $name serves Prometheus metrics over HTTP (see /usr/share/doc/$name).
 The package installs a hardened systemd unit running as the $name system
 user, enabled on install, with defaults in /etc/$name/config.toml and
 /etc/default/$name.
CONTROL
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -print | sed 's#^\./##' | grep -v '^etc/' | sort | xargs md5sum) > "$pkg/DEBIAN/md5sums"

mkdir -p "$outdir"
out="$outdir/${name}_${debversion}_${arch}.deb"
# Reproducible: file times clamped to the last commit's (dpkg-deb honours SOURCE_DATE_EPOCH).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
echo "$out"
