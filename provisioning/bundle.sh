#!/usr/bin/env bash
# `npm run bundle` (CONTRACT §9 Install): camnode-<version>-<arch>.tgz for an offline install,
# with its SHA-256 and a listing of its contents beside it. The bundle holds the built agent
# (dist/src), the production dependencies and the files an install needs (device/,
# provisioning/, docs/); no compiled addon: install scripts are not run, so onoff's epoll addon
# is not built here — the install is to rebuild it on the target when a compiler is there, else
# `button.backend: auto` uses the gpiod tools. Nothing in it depends on the build machine's
# architecture, so --arch names the target's (Debian names: arm64, armhf, amd64).
#
#   provisioning/bundle.sh [--arch arm64|armhf|amd64] [--out DIR] [--no-build]
# (--no-build: take dist/ as it is, e.g. in the tests, which must not rewrite it under others)
set -euo pipefail
cd "$(dirname "$0")/.."

PROG=bundle.sh
die() { echo "$PROG: $*" >&2; exit 2; }

out=build
arch=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || die "--arch needs arm64, armhf or amd64"; arch=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
if [ -z "$arch" ]; then
  case "$(node -p process.arch)" in
    x64) arch=amd64 ;;
    arm64) arch=arm64 ;;
    arm) arch=armhf ;;
    *) die "no Debian name for this machine's architecture; give --arch" ;;
  esac
fi
case "$arch" in arm64|armhf|amd64) ;; *) die "--arch: arm64, armhf or amd64, not $arch" ;; esac

version=$(node -p "require('./package.json').version")
name="camnode-$version-$arch"
echo "$PROG: building $name"
if [ "$build" = 1 ]; then
  # A fresh checkout has no TypeScript compiler yet: the locked dependencies first.
  # (Without install scripts: compiling needs none, and a box without a C++ compiler has none.)
  [ -x node_modules/.bin/tsc ] || npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  npm run build --silent
fi
[ -f dist/src/main.js ] || die "no dist/src/main.js: run npm run build"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/camnode"
mkdir -p "$root/dist"
cp -r dist/src "$root/dist/src"
# The package's bin, executable however dist/ was built (the same bytes and modes every time).
chmod 755 "$root/dist/src/main.js"
cp -r package.json package-lock.json README.md device provisioning docs "$root/"
# Production dependencies exactly as locked; no install scripts, so no addon is compiled.
(cd "$root" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
addons=$(find "$root" -name '*.node' -print)
[ -z "$addons" ] || die "compiled addons in the bundle: $addons"

mkdir -p "$out"
tgz="$out/$name.tgz"
# Reproducible order and owners: the listing below reads the same on every build.
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$stage" -czf "$tgz.tmp" camnode
mv "$tgz.tmp" "$tgz"
(cd "$out" && sha256sum "$name.tgz" > "$name.tgz.sha256")
tar -tzf "$tgz" > "$out/$name.contents.txt"
echo "$tgz ($(du -h "$tgz" | cut -f1)), $(wc -l < "$out/$name.contents.txt") entries"
echo "sha256: $(cut -d' ' -f1 "$out/$name.tgz.sha256")"
