#!/usr/bin/env bash
# Builds the Debian package `container_VERSION_ARCH.deb` with dpkg-deb alone (no
# debhelper, no cargo-deb): both binaries, the man pages, the shell completions,
# the spec schema and the systemd units. No network but what cargo needs to build.
#
#   packaging/deb.sh [--debug] [--out DIR]
#
# --debug packs the debug binaries (`cargo build`, what `cargo test` built already)
# instead of a release build (LTO in one codegen unit: several minutes on 2 cores);
# CI uses it to check the package in minutes. A package to install for real is built
# without it. The binaries are stripped either way.
#
# Installed layout:
#   /usr/bin/container, /usr/bin/container-init   `container` runs the container-init
#       next to its own executable as every container's PID 1 (runtime::prepare::
#       init_program, exec::attach::HelperProgram::installed), so both are in /usr/bin
#   /usr/share/man/man1/container*.1.gz           `container __man DIR` (clap_mangen)
#   /usr/share/bash-completion/completions/container, zsh and fish completions
#   /usr/share/container/container.schema.json    as `container schema --install`
#   /usr/lib/systemd/system/container.service, container@.service (dist/systemd/,
#       run /usr/bin/container instead of /usr/local/bin/container; not enabled)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=$PWD
while [ $# -gt 0 ]; do
  case $1 in
    --debug) profile=debug ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deb.sh: unknown argument $1 (usage: packaging/deb.sh [--debug] [--out DIR])" >&2; exit 64 ;;
  esac
  shift
done

target=${CARGO_TARGET_DIR:-$PWD/target}
if [ "$profile" = release ]; then
  cargo build --locked --release --bins
else
  cargo build --locked --bins
fi
bin=$target/$profile

# The man pages' date: the commit's, so a rebuild of one commit packs the same pages.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
umask 022
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" "$root/usr/lib/systemd/system" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/doc/container"

for b in container container-init; do
  install -m 0755 "$bin/$b" "$root/usr/bin/$b"
  strip --strip-unneeded "$root/usr/bin/$b"
done
# Everything below is made by the packed binary itself, so it says what that one does.
ct=$root/usr/bin/container

man=$stage/man
"$ct" __man "$man" >/dev/null
for page in "$man"/*.1; do
  name=$(basename "$page")
  gzip -9n <"$page" >"$root/usr/share/man/man1/$name.gz"
done

# Run by its bare name, `completions` writes a script that asks `container` on PATH.
PATH="$root/usr/bin:$PATH" container completions bash >"$root/usr/share/bash-completion/completions/container"
PATH="$root/usr/bin:$PATH" container completions zsh >"$root/usr/share/zsh/vendor-completions/_container"
PATH="$root/usr/bin:$PATH" container completions fish >"$root/usr/share/fish/vendor_completions.d/container.fish"

"$ct" schema --install --path "$root/usr/share/container/container.schema.json" >/dev/null

for unit in container.service container@.service; do
  sed 's|/usr/local/bin/container|/usr/bin/container|g' "dist/systemd/$unit" >"$root/usr/lib/systemd/system/$unit"
  grep -q '^ExecStart=/usr/bin/container ' "$root/usr/lib/systemd/system/$unit"
done

cat >"$root/usr/share/doc/container/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: container

Files: *
License: MIT
EOF

# The shared libraries `container` links (container-init is static): dpkg-shlibdeps
# (dpkg-dev) when it is installed, else what a Rust binary on glibc needs.
depends_libs="libc6, libgcc-s1"
if command -v dpkg-shlibdeps >/dev/null; then
  mkdir -p "$stage/src/debian"
  printf 'Source: container\n\nPackage: container\nArchitecture: any\n' >"$stage/src/debian/control"
  libs=$(cd "$stage/src" && dpkg-shlibdeps -O "$root/usr/bin/container" "$root/usr/bin/container-init" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p') || true
  [ -z "$libs" ] || depends_libs=$libs
fi

# Depends: nftables, the `nft` every container's network fence and NAT need (the tool
# refuses to start a container without it); debootstrap, the base of every
# `base = "debian:…"` spec. Recommends: curl, for specs that fetch tarballs; and
# ca-certificates, for those fetched over https. Suggests: bash-completion, which
# loads /usr/share/bash-completion/completions/container.
#
# Conflicts: open-infrastructure-compute-tools, Debian's package of another tool
# that also installs /usr/bin/container. Two packages cannot both own one file:
# with Conflicts, apt says so before it changes anything and offers to remove the
# other one. Not Replaces: that would let dpkg overwrite the other package's
# /usr/bin/container silently and leave that package broken; the tools are not
# one another's successor.
cat >"$root/DEBIAN/control" <<EOF
Package: container
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-container maintainers <root@localhost>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends_libs, nftables, debootstrap
Recommends: curl, ca-certificates
Suggests: bash-completion
Conflicts: open-infrastructure-compute-tools
Section: admin
Priority: optional
Description: build and run service containers from declarative specs
 One TOML or YAML file says what a container is: its base system, packages,
 files, volumes, network addresses and services (MariaDB, Caddy, PHP,
 WordPress, BIND, Samba, nginx, sshd, ...). container compiles it into a plan,
 shows what would change, and converges the host to it: own namespaces,
 read-only root, routed network and a small PID 1 per container, no daemon.
EOF

# systemd learns about the units (none is enabled: see "Containers at boot").
for script in postinst postrm; do
  cat >"$root/DEBIAN/$script" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
  chmod 0755 "$root/DEBIAN/$script"
done

mkdir -p "$out"
deb=$out/container_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
