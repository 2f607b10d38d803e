#!/usr/bin/env bash
# Builds the agent's .deb (cargo-deb; metadata in agent/Cargo.toml [package.metadata.deb]) and
# checks what is inside it:
#
#   packaging/build-deb.sh amd64     native release build, then the .deb
#   packaging/build-deb.sh arm64     cross build with packaging/build-arm.sh, then the .deb
#   packaging/build-deb.sh all       both
#
# Each .deb is listed (dpkg-deb -c) and checked: the binary for the right machine, the systemd
# unit, the defaults file and the maintainer scripts. The path of each .deb is the last line.
# cargo-deb is installed with `cargo install --locked` into $EDGEWATCH_CACHE_DIR/tools (default
# /var/cache/edgewatch/tools) when missing; the arm64 toolchain with `build-arm.sh --install`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EDGEWATCH_CACHE_DIR:-/var/cache/edgewatch}
TOOLS=$CACHE/tools
CARGO_DEB_VERSION=3.8.0
export PATH="$TOOLS/bin:$HOME/.cargo/bin:$PATH"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET_DIR

arches=()
case "${1:-}" in
  amd64|arm64) arches=("$1") ;;
  all) arches=(amd64 arm64) ;;
  *) echo "usage: $0 amd64|arm64|all" >&2; exit 2 ;;
esac

command -v file >/dev/null || { echo "error: file is missing (apt-get install file)" >&2; exit 1; }
if ! cargo-deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "installing cargo-deb $CARGO_DEB_VERSION into $TOOLS (first time only)" >&2
  mkdir -p "$TOOLS"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" --root "$TOOLS"
fi

check_deb() { # check_deb FILE ARCH MACHINE
  local deb=$1 arch=$2 machine=$3 listing dir
  echo "--- $deb" >&2
  dpkg-deb -I "$deb" >&2
  listing=$(dpkg-deb -c "$deb")
  echo "$listing" >&2
  [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || { echo "error: $deb is not for $arch" >&2; exit 1; }
  for path in ./usr/bin/edgewatch-agent ./usr/lib/systemd/system/edgewatch-agent.service \
      ./etc/default/edgewatch-agent ./usr/share/doc/edgewatch-agent/copyright; do
    grep -q " $path\$" <<<"$listing" || { echo "error: $deb lacks $path" >&2; exit 1; }
  done
  dir=$(mktemp -d)
  dpkg-deb -x "$deb" "$dir"
  dpkg-deb -e "$deb" "$dir/DEBIAN"
  file -b "$dir/usr/bin/edgewatch-agent" | grep -q "$machine" \
    || { echo "error: the packaged binary is not $machine: $(file -b "$dir/usr/bin/edgewatch-agent")" >&2; exit 1; }
  grep -q '^Type=notify' "$dir/usr/lib/systemd/system/edgewatch-agent.service" \
    || { echo "error: the packaged unit is not Type=notify" >&2; exit 1; }
  grep -q 'adduser --system' "$dir/DEBIAN/postinst" || { echo "error: postinst creates no user" >&2; exit 1; }
  grep -q 'systemctl' "$dir/DEBIAN/postinst" || { echo "error: postinst does not enable the unit" >&2; exit 1; }
  rm -rf "$dir"
}

for arch in "${arches[@]}"; do
  case $arch in
    amd64)
      (cd "$ROOT" && cargo build --locked --release -p edgewatch-agent --bin edgewatch-agent)
      (cd "$ROOT" && cargo deb --locked --no-build -p edgewatch-agent --output "$TARGET_DIR/debian/") >&2
      deb=$(ls -t "$TARGET_DIR"/debian/edgewatch-agent_*_amd64.deb | head -n 1)
      check_deb "$deb" amd64 x86-64
      ;;
    arm64)
      install=()
      if ! command -v aarch64-linux-gnu-gcc >/dev/null || [ ! -x /usr/bin/rustc ] \
          || [ ! -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ]; then
        install=(--install)  # Debian's cross toolchain, once (needs root)
      fi
      "$ROOT/packaging/build-arm.sh" "${install[@]}" >&2
      # Already stripped by the release profile; the host's strip cannot read aarch64 anyway.
      # build-arm.sh builds into its own target directory (Debian's rustc).
      (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR/debian-rustc cargo deb --locked --no-build --no-strip \
        -p edgewatch-agent --target aarch64-unknown-linux-gnu --output "$TARGET_DIR/debian/") >&2
      deb=$(ls -t "$TARGET_DIR"/debian/edgewatch-agent_*_arm64.deb | head -n 1)
      check_deb "$deb" arm64 aarch64
      ;;
  esac
  echo "$deb"
done
