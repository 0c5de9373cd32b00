#!/usr/bin/env bash
# Installs the real editor tools that tests/editors.rs drives (run it, then the tests
# with CONTAINER_TEST_EDITORS=1 so that a missing tool fails instead of skipping):
# - taplo (the engine of Even Better TOML): `taplo lint` and `taplo lsp stdio`;
# - yaml-language-server (VS Code's YAML extension, Neovim, Helix): `--stdio`.
# Idempotent: what is installed at the pinned version is left alone. Runs as root on
# Debian 12 (nodejs/npm from apt when npm is missing) or as any user with npm.
set -euo pipefail

TAPLO_VERSION=0.10.0
YAML_LS_VERSION=1.25.0

# As root, into /usr/local: the unit tier runs the editor tests as `nobody`, who
# cannot reach root's ~/.cargo/bin.
if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="${CARGO_HOME:-$HOME/.cargo}"; fi
export PATH="$prefix/bin:$PATH"

if "$prefix/bin/taplo" --version 2>/dev/null | grep -q " $TAPLO_VERSION\$"; then
  echo "taplo $TAPLO_VERSION: installed"
elif "${CARGO_HOME:-$HOME/.cargo}/bin/taplo" --version 2>/dev/null | grep -q " $TAPLO_VERSION\$"; then
  # Built before by `cargo install` for this user: the same binary, no rebuild.
  install -m 0755 "${CARGO_HOME:-$HOME/.cargo}/bin/taplo" "$prefix/bin/taplo"
else
  # Default features: lint + lsp, rustls (no OpenSSL headers needed).
  cargo install --locked --quiet --root "$prefix" taplo-cli --version "$TAPLO_VERSION"
fi

if ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if [ "$(yaml-language-server --version 2>/dev/null || true)" = "$YAML_LS_VERSION" ]; then
  echo "yaml-language-server $YAML_LS_VERSION: installed"
else
  npm install --global --no-audit --no-fund --loglevel=error "yaml-language-server@$YAML_LS_VERSION"
fi

taplo --version
echo "yaml-language-server $(yaml-language-server --version)"
