#!/usr/bin/env bash
# Idempotent setup for a fresh clone: Debian packages when missing, `npm ci` when the lock
# changed, and a build when the sources changed. `--test` adds what the test suite drives for
# real (an RTSP camera server, libfaketime, strace, Mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
want_test=0
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet=1 ;;
    --test) want_test=1 ;;
  esac
done
say() { [ "$quiet" = 1 ] || echo "setup: $*"; }

# openssl: the fleet CA (provisioning/fleet-ca.sh) and the tests' CA; a minimal Debian lacks it.
packages=(ffmpeg openssl)
if [ "$want_test" = 1 ]; then
  packages+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
             gstreamer1.0-plugins-ugly faketime strace mosquitto mosquitto-clients e2fsprogs util-linux tmux
             age inotify-tools chromium prometheus systemd shellcheck debootstrap)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing packages ${missing[*]} and no apt-get to install them" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing ${missing[*]}"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=node_modules/.camnode-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm dependencies"
  # `npm ci`, as every CI and packager runs it: a lock that drifted from package.json fails
  # here, not later on someone else's machine.
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

if [ ! -f dist/src/main.js ] || [ -n "$(find src bench tsconfig.json package.json -newer dist/src/main.js -print -quit 2>/dev/null)" ]; then
  say "building"
  # From clean: a module moved or deleted leaves no stale copy in dist/ (nor in a bundle).
  rm -rf dist
  npx tsc -p tsconfig.json
  chmod +x dist/src/main.js
  touch dist/src/main.js
fi
