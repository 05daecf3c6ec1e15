#!/usr/bin/env bash
# Installs the OpenADR 3 VTN the demand-response test (tests/openadr.rs) runs:
# openleadr-vtn from crates.io, built once into a cache outside the clone,
# with its SQL migrations beside it (the test applies them itself: two of
# them need PostgreSQL 16, see tests/openadr.rs). Prints the binary's path.
#
#   examples/csms/tests/openadr/vtn.sh          # install if missing
#   EVPROTO_OPENLEADR=/path vtn.sh              # another cache
#
# Needs a C toolchain, cmake and OpenSSL headers (paho-mqtt, aws-lc are
# always built). Cold build: about 7 minutes on 2 cores (measured 7m03s).
set -euo pipefail
VERSION=0.2.8
ROOT="${EVPROTO_OPENLEADR:-${EVPROTO_CACHE:-$HOME/.cache/evproto}/openleadr}"
BIN="$ROOT/bin/openleadr-vtn"
if [ -x "$BIN" ] && [ "$(cat "$ROOT/.version" 2>/dev/null)" = "$VERSION" ] && [ -d "$ROOT/migrations" ]; then
  echo "$BIN"
  exit 0
fi
if ! command -v cmake >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q cmake >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q cmake >/dev/null; }
fi
# its own target dir: the workspace's cache is not disturbed
CARGO_TARGET_DIR="${ROOT}-target" cargo install -q "openleadr-vtn@$VERSION" \
  --no-default-features --features postgres,internal-oauth --root "$ROOT" --force >&2
SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"openleadr-vtn-$VERSION" | head -1)
rm -rf "$ROOT/migrations"
cp -r "$SRC/migrations" "$ROOT/migrations"
printf '%s' "$VERSION" > "$ROOT/.version"
echo "$BIN"
