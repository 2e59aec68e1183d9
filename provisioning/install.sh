#!/usr/bin/env bash
# Installs camnode on a Raspberry Pi OS or Debian box (12 or 13; arm64, armhf, amd64) and starts
# it when `camnode check` finds nothing failed (CONTRACT §9 Install). Idempotent: run it again
# with the same inputs and nothing changes; with a new bundle or config it changes just that.
#
#   sudo provisioning/install.sh --config FILE [--bundle FILE] [--node-tarball FILE] [--dry-run]
#                                [--no-verify]
#
#   --config FILE        the node's config; installed as /etc/camnode/config.yaml
#   --bundle FILE        camnode-<version>-<arch>.tgz from `npm run bundle` (offline install);
#                        without it, the checkout or unpacked bundle this script sits in
#   --node-tarball FILE  an official Node.js tarball (node-vX.Y.Z-linux-ARCH.tar.xz, 20 or newer)
#                        for a box without Node >= 20 and without the internet
#   --dry-run            say what would change, change nothing
#   --no-verify          take a bundle or Node tarball without its .sha256 / SHASUMS256.txt
#
# Exit: 0 installed (and started where systemd runs); 1 installed but not started (`camnode
# check` failed: the rows say what to fix) or a step failed; 2 bad usage or input.
# See docs/install.md.
set -euo pipefail
umask 022
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

PROG=install.sh
HERE=$(cd "$(dirname "$0")/.." && pwd -P)
OPT=/opt/camnode
ETC=/etc/camnode
UNITS=/etc/systemd/system
# The Node line fetched online on Debian 12, whose own nodejs is 18 (see docs/install.md).
NODE_LINE=24

die() { echo "$PROG: $*" >&2; exit 2; }
fail() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*"; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

config=""
bundle=""
node_tarball=""
dry=0
verify=1
while [ $# -gt 0 ]; do
  case "$1" in
    --config) [ $# -ge 2 ] || die "--config needs a file"; config=$2; shift 2 ;;
    --bundle) [ $# -ge 2 ] || die "--bundle needs a file"; bundle=$2; shift 2 ;;
    --node-tarball) [ $# -ge 2 ] || die "--node-tarball needs a file"; node_tarball=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --no-verify) verify=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -n "$config" ] || die "--config FILE is required (see --help)"
[ -f "$config" ] || die "--config: $config: no such file"
config=$(readlink -f "$config")
[ -z "$bundle" ] || [ -f "$bundle" ] || die "--bundle: $bundle: no such file"
[ -z "$node_tarball" ] || [ -f "$node_tarball" ] || die "--node-tarball: $node_tarball: no such file"
[ "$dry" = 1 ] || [ "$(id -u)" = 0 ] || die "run as root (sudo), or with --dry-run"

# --- Changes: every one goes through act, which --dry-run only prints -------------------------
changes=0
act() {
  changes=$((changes + 1))
  if [ "$dry" = 1 ]; then echo "would: $(printf "%q " "$@")"; else echo "+ $(printf "%q " "$@")"; "$@"; fi
}
# What to put back if the new release or config fails its check: "path<TAB>backup" ("-": remove).
undo=()
remember() {
  local path=$1
  [ "$dry" = 0 ] || return 0
  if [ -e "$path" ] || [ -L "$path" ]; then
    cp -P -p "$path" "$scratch/undo.${#undo[@]}"
    undo+=("$path	$scratch/undo.${#undo[@]}")
  else
    undo+=("$path	-")
  fi
}
put_back() {
  local i path backup
  for ((i = ${#undo[@]} - 1; i >= 0; i--)); do
    path=${undo[i]%%	*}
    backup=${undo[i]#*	}
    if [ "$backup" = - ]; then rm -f "$path"; else cp -P -p "$backup" "$path.undo" && mv -f -T "$path.undo" "$path"; fi
    echo "+ put back $path"
  done
}
# Replace a file atomically, only if its bytes, mode or owner differ.
put_file() {
  local src=$1 dest=$2 mode=$3 owner=$4
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c '%a %U:%G' "$dest")" = "$mode $owner" ]; then return 0; fi
  remember "$dest"
  act install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest.new"
  act mv -f "$dest.new" "$dest"
}
# A folder with this mode and owner (the folder itself; never what is inside).
ensure_dir() {
  local dir=$1 mode=$2 owner=$3
  if [ -d "$dir" ] && [ "$(stat -c '%a %U:%G' "$dir")" = "$mode $owner" ]; then return 0; fi
  [ -d "$dir" ] || act mkdir -p "$dir"
  act chown "$owner" "$dir"
  # 00: GNU chmod keeps a folder's setgid bit unless told to clear it.
  act chmod "00$mode" "$dir"
}
ensure_link() {
  local target=$1 link=$2
  [ "$(readlink "$link" 2>/dev/null)" = "$target" ] && return 0
  remember "$link"
  act ln -sfn "$target" "$link.new"
  act mv -T "$link.new" "$link"
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# --- The machine -----------------------------------------------------------------------------
command -v dpkg >/dev/null || die "not a Debian system (no dpkg): camnode installs on Raspberry Pi OS or Debian 12/13"
arch=$(dpkg --print-architecture)
case "$arch" in
  amd64) node_arch=x64 ;;
  arm64) node_arch=arm64 ;;
  armhf) node_arch=armv7l ;;
  *) die "architecture $arch: camnode installs on arm64, armhf or amd64" ;;
esac
# shellcheck disable=SC1091
os_id=$(. /etc/os-release && echo "${ID:-}") || os_id=""
# shellcheck disable=SC1091
os_version=$(. /etc/os-release && echo "${VERSION_ID:-}") || os_version=""
say "installing on ${os_id:-an unknown OS} ${os_version} ($arch)$([ "$dry" = 1 ] && echo ', dry run: nothing is changed')"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
# Checks FILE against the SHA-256 list beside it, when there is one.
verify_beside() {
  local file=$1 list=$2 want got
  got=$(sha256_of "$file")
  if [ ! -f "$list" ]; then
    [ "$verify" = 0 ] || die "no $(basename "$list") beside $(basename "$file"): bring it too, or give --no-verify (its SHA-256 is $got)"
    say "no $(basename "$list") beside $(basename "$file"): not verified (--no-verify; its SHA-256 is $got)"
    return 0
  fi
  want=$(awk -v f="$(basename "$file")" '$2 == f || $2 == "*" f { print $1 }' "$list")
  [ -n "$want" ] || die "$(basename "$file") is not listed in $list"
  [ "$got" = "$want" ] || die "$(basename "$file"): SHA-256 $got does not match $list ($want): a damaged or different file"
  say "$(basename "$file"): SHA-256 verified against $(basename "$list")"
}

node_ok() {
  local v
  v=$("$1" -p 'process.versions.node' 2>/dev/null) || return 1
  [ "${v%%.*}" -ge 20 ] 2>/dev/null
}

# An official Node tarball for this machine, checked against the SHASUMS256.txt beside it.
vet_node_tarball() {
  local file=$1 base name
  base=$(basename "$file")
  [[ "$base" =~ ^node-v([0-9]+)\.[0-9]+\.[0-9]+-linux-(x64|arm64|armv7l)\.tar\.(xz|gz)$ ]] \
    || die "--node-tarball: $base is not an official Node.js tarball (node-vX.Y.Z-linux-ARCH.tar.xz)"
  [ "${BASH_REMATCH[1]}" -ge 20 ] || die "--node-tarball: $base is Node ${BASH_REMATCH[1]}: camnode needs 20 or newer"
  [ "${BASH_REMATCH[2]}" = "$node_arch" ] || die "--node-tarball: $base is for ${BASH_REMATCH[2]}; this $arch machine needs linux-$node_arch"
  name=${base%.tar.*}
  node_ok "$OPT/node/$name/bin/node" && return 0
  verify_beside "$file" "$(dirname "$file")/SHASUMS256.txt"
}

# The inputs first, before anything is installed.
[ -z "$node_tarball" ] || vet_node_tarball "$node_tarball"
if [ -n "$bundle" ]; then
  base=$(basename "$bundle")
  [[ "$base" =~ ^camnode-(.+)-(arm64|armhf|amd64)\.tgz$ ]] || die "--bundle: $base is not camnode-<version>-<arch>.tgz"
  bundle_version=${BASH_REMATCH[1]}
  [ "${BASH_REMATCH[2]}" = "$arch" ] || die "--bundle: $base is for ${BASH_REMATCH[2]}; this machine is $arch"
  verify_beside "$bundle" "$bundle.sha256"
fi

# --- Debian packages -------------------------------------------------------------------------
packages=()
command -v ffmpeg >/dev/null || packages+=(ffmpeg)
# python3 sends systemd's READY and WATCHDOG (Node has no datagram sockets).
command -v python3 >/dev/null || packages+=(python3-minimal)
# gpiomon/gpioset: the button and LED backend where onoff's addon is not built.
command -v gpiomon >/dev/null || packages+=(gpiod)
case "$node_tarball" in *.xz) command -v xz >/dev/null || packages+=(xz-utils) ;; esac

# Which Node: the tarball given; else the one a previous install put in place; else a Node >= 20
# already on the box; else Debian 13's own nodejs; else (Debian 12) the official tarball online.
node_plan=""
system_node=$(command -v node || true)
if [ -n "$node_tarball" ]; then node_plan=tarball
elif node_ok "$OPT/node/current/bin/node"; then node_plan=installed
elif [ -n "$system_node" ] && node_ok "$system_node"; then node_plan=system
elif [ "${os_version%%.*}" = 13 ] || [ "${os_version%%.*}" = 14 ]; then
  node_plan=apt
  packages+=(nodejs)
  # npm builds a checkout into a bundle (and onoff's addon); Debian packages it apart.
  if [ -z "$bundle" ] && [ -d "$HERE/src" ]; then packages+=(npm); fi
else
  node_plan=download
  command -v curl >/dev/null || packages+=(curl)
  command -v xz >/dev/null || packages+=(xz-utils)
  [ -f /etc/ssl/certs/ca-certificates.crt ] || packages+=(ca-certificates)
fi

if [ "${#packages[@]}" -gt 0 ]; then
  say "Debian packages to install: ${packages[*]}"
  if [ "$dry" = 1 ]; then act apt-get install -y --no-install-recommends "${packages[@]}"
  else
    act apt-get update -q || fail "apt-get update failed: offline? install ${packages[*]} from local .deb files (apt-get install ./*.deb) and run $PROG again"
    act env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" \
      || fail "could not install ${packages[*]}: install them by hand and run $PROG again"
  fi
fi

# --- Node.js >= 20 ---------------------------------------------------------------------------
# An official tarball, unpacked root-owned under $OPT/node with $OPT/node/current -> it.
install_node_tarball() {
  local file=$1 name
  name=$(basename "$file")
  name=${name%.tar.*}
  if node_ok "$OPT/node/$name/bin/node"; then
    say "Node: $name already in place"
  else
    # (xz may only now be installed: the listing waits until here.)
    [ "$dry" = 1 ] || tar -tf "$file" "$name/bin/node" >/dev/null 2>&1 || die "--node-tarball: $(basename "$file") has no $name/bin/node"
    ensure_dir "$OPT" 755 root:root
    ensure_dir "$OPT/node" 755 root:root
    act rm -rf "$OPT/node/.$name.new"
    act mkdir -p "$OPT/node/.$name.new"
    act tar -xf "$file" -C "$OPT/node/.$name.new" --no-same-owner --strip-components=1
    act mv -T "$OPT/node/.$name.new" "$OPT/node/$name"
  fi
  ensure_link "$name" "$OPT/node/current"
  NODE_HOME=$OPT/node/current
}

NODE_HOME=""
case "$node_plan" in
  tarball) install_node_tarball "$node_tarball" ;;
  installed) NODE_HOME=$OPT/node/current; say "Node: $(readlink "$OPT/node/current") (installed before)" ;;
  system) NODE_HOME=$(dirname "$(dirname "$(readlink -f "$system_node")")"); say "Node: $("$system_node" --version) at $system_node" ;;
  apt) NODE_HOME=/usr; say "Node: Debian's nodejs package" ;;
  download)
    # Debian 12's nodejs is 18: the official build of the current LTS line from nodejs.org,
    # checked against its SHASUMS256.txt (fetched over HTTPS; the release team's GPG signature
    # is not checked: their keys are not shipped here). Untested in this project's CI (offline).
    url="https://nodejs.org/dist/latest-v$NODE_LINE.x"
    say "Node: downloading the latest Node $NODE_LINE for linux-$node_arch from $url"
    if [ "$dry" = 1 ]; then act curl -fsSL "$url/SHASUMS256.txt"; NODE_HOME=$OPT/node/current
    else
      mkdir -p "$scratch/node"
      curl -fsSL --retry 3 -o "$scratch/node/SHASUMS256.txt" "$url/SHASUMS256.txt" || fail "cannot reach $url: bring an official tarball and use --node-tarball"
      file=$(awk -v a="linux-$node_arch.tar.xz" 'index($2, a) && $2 ~ /^node-v/ { print $2 }' "$scratch/node/SHASUMS256.txt" | head -n 1)
      [ -n "$file" ] || fail "no linux-$node_arch tarball listed at $url"
      curl -fsSL --retry 3 -o "$scratch/node/$file" "$url/$file" || fail "download of $url/$file failed"
      vet_node_tarball "$scratch/node/$file"
      install_node_tarball "$scratch/node/$file"
    fi ;;
esac
NODE="$NODE_HOME/bin/node"
if [ "$dry" = 1 ] && ! [ -x "$NODE" ]; then
  NODE=$(command -v node || true)
  node_ok "$NODE" || { say "dry run: no Node >= 20 here yet, so the release and the config are not read"; exit 0; }
fi
node_ok "$NODE" || fail "$NODE is not a working Node >= 20"
say "Node $("$NODE" --version) at $NODE"

# --- The release -----------------------------------------------------------------------------
# Staged in scratch first: the config is validated by the very code that will run it, before
# anything of camnode's own is changed.
stage="$scratch/release"
if [ -n "$bundle" ]; then
  mkdir -p "$scratch/unpack"
  tar -xzf "$bundle" -C "$scratch/unpack" --no-same-owner || die "--bundle: $base cannot be unpacked"
  [ -f "$scratch/unpack/camnode/dist/src/main.js" ] || die "--bundle: $base holds no camnode/dist/src/main.js"
  mv "$scratch/unpack/camnode" "$stage"
elif [ -d "$HERE/src" ]; then
  # A checkout: the bundle is built from it (this needs npm and the npm registry), as the user
  # who owns the checkout, so that its node_modules and dist stay theirs.
  if [ "$dry" = 1 ]; then
    say "dry run: the checkout $HERE would be built into a bundle first (npm and the npm registry), then installed; nothing more can be shown without building it"
    exit 0
  fi
  say "building a bundle from the checkout $HERE"
  owner=$(stat -c %U "$HERE")
  as_owner=()
  [ "$owner" = "$(id -un)" ] || as_owner=(runuser -u "$owner" --)
  built=$(mktemp -d)
  trap 'rm -rf "$scratch" "$built"' EXIT
  chown "$owner" "$built"
  "${as_owner[@]}" env PATH="$NODE_HOME/bin:$PATH" bash "$HERE/provisioning/bundle.sh" --arch "$arch" --out "$built" \
    || fail "building the bundle failed (a checkout needs npm and the npm registry; offline, use --bundle)"
  mkdir -p "$scratch/unpack"
  tar -xzf "$built"/camnode-*.tgz -C "$scratch/unpack" --no-same-owner
  mv "$scratch/unpack/camnode" "$stage"
elif [ -f "$HERE/dist/src/main.js" ] && [ -d "$HERE/node_modules" ]; then
  # An unpacked bundle (this script's own release, too, when run from /opt/camnode/current).
  mkdir -p "$stage"
  cp -a "$HERE/." "$stage"
  rm -rf "$stage/node_modules/epoll/build"
else
  die "$HERE is neither a checkout nor an unpacked bundle: give --bundle FILE"
fi
chown -R root:root "$stage" 2>/dev/null || true
version=$("$NODE" -p "require('$stage/package.json').version")
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || die "the release's version \"$version\" is not a version (X.Y.Z)"
[ -z "$bundle" ] || [ "$bundle_version" = "$version" ] || die "--bundle: $(basename "$bundle") holds camnode $version, not $bundle_version"

# The config, read by the release's own loader: the same errors as `camnode run` (exit 2).
# shellcheck disable=SC2016 # JavaScript, not shell
facts=$("$NODE" --input-type=module -e '
  const [loader, file] = process.argv.slice(1);
  const { loadConfig, ConfigError } = await import(loader);
  let c;
  try { c = loadConfig(file); } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.problems) console.error(line);
    process.exit(2);
  }
  const facts = {
    nodeId: c.node.id, stateDir: c.node.stateDir, storage: c.storage.path, socket: c.control.socket,
    mqttKey: c.mqtt?.key ?? "", mqttCert: c.mqtt?.cert ?? "",
    upstreamDir: c.upstream?.type === "dir" ? c.upstream.path : "",
    callsWatch: c.calls && !c.calls.keepSource ? c.calls.watch : "",
    releaseKey: c.fleet?.releaseKey ?? "",
  };
  for (const [k, v] of Object.entries(facts)) console.log(`${k}=${v}`);
' "$stage/dist/src/config/load.js" "$config") || die "--config: $config is not a valid camnode config (the lines above say which field)"
fact() { printf '%s\n' "$facts" | sed -n "s/^$1=//p"; }
node_id=$(fact nodeId)
state_dir=$(fact stateDir)
storage=$(fact storage)
socket_dir=$(dirname "$(fact socket)")
mqtt_key=$(fact mqttKey)
mqtt_cert=$(fact mqttCert)
say "config: node $node_id, state in $state_dir, footage in $storage"
# The paths go into the unit, where a space splits a path and % is a specifier.
for field in node.stateDir:"$state_dir" storage.path:"$storage" control.socket:"$(fact socket)" upstream.path:"$(fact upstreamDir)" calls.watch:"$(fact callsWatch)" mqtt.key:"$mqtt_key"; do
  path=${field#*:}
  [ -n "$path" ] || continue
  [[ "$path" = /* ]] || die "${field%%:*}: $path must be an absolute path"
  [[ "$path" =~ ^[A-Za-z0-9/._+-]+$ ]] || die "${field%%:*}: $path: use letters, digits and / . _ + - only (it goes into the systemd unit)"
done
# A node that was working before this run gets its release and config back if the new ones fail.
had_install=0
if [ -L "$OPT/current" ] && [ -x /usr/bin/camnode ] && [ -f "$ETC/config.yaml" ]; then had_install=1; fi

# --- The camnode user ------------------------------------------------------------------------
getent group video >/dev/null || act groupadd --system video
if ! getent group gpio >/dev/null; then
  # Raspberry Pi OS has the gpio group and its udev rule; plain Debian has neither.
  act groupadd --system gpio
fi
if [ ! -f /etc/udev/rules.d/99-com.rules ]; then
  printf '%s\n' '# camnode (provisioning/install.sh): the GPIO chips for the gpio group, as Raspberry Pi OS has it.' \
    'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' > "$scratch/gpio.rules"
  before_rule=$changes
  put_file "$scratch/gpio.rules" /etc/udev/rules.d/60-camnode-gpio.rules 644 root:root
  # At once: check, run as the camnode user below, opens the GPIO chip.
  if [ "$changes" -gt "$before_rule" ] && [ "$dry" = 0 ] && [ -S /run/udev/control ]; then
    { udevadm control --reload && udevadm trigger --subsystem-match=gpio --action=change && udevadm settle; } \
      || say "udev did not reload its rules: the gpio group gets the GPIO chips at the next boot"
  fi
fi
if ! id camnode >/dev/null 2>&1; then
  act useradd --system --user-group --home-dir "$state_dir" --no-create-home --shell /usr/sbin/nologin \
    --comment "camnode camera recorder" camnode
fi
for group in video gpio; do
  if ! id -nG camnode 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then act usermod -a -G "$group" camnode; fi
done

# --- Folders and the config ------------------------------------------------------------------
ensure_dir "$ETC" 750 root:camnode
# The config holds camera passwords: root writes it, the camnode group reads it.
if [ "$config" = "$ETC/config.yaml" ]; then
  [ "$(stat -c '%a %U:%G' "$config")" = "640 root:camnode" ] || { act chown root:camnode "$config"; act chmod 640 "$config"; }
else
  put_file "$config" "$ETC/config.yaml" 640 root:camnode
fi
ensure_dir "$state_dir" 700 camnode:camnode
ensure_dir "$storage" 750 camnode:camnode
mountpoint -q "$storage" 2>/dev/null || [ "$(stat -c %d "$storage" 2>/dev/null)" != "$(stat -c %d / )" ] \
  || say "note: $storage is on the root filesystem; footage belongs on a USB SSD mounted there (docs/install.md)"

# --- /opt/camnode/releases/<version> and current ---------------------------------------------
# Content compared file by file (the built addon aside): the same release twice changes nothing.
tree_sum() {
  # (A few processes for ten thousand files: a Pi forks slowly.)
  (cd "$1" && {
    find . -path ./node_modules/epoll/build -prune -o -type l -printf 'link %l %p\n'
    find . -path ./node_modules/epoll/build -prune -o -type f -printf 'mode %m %p\n'
    find . -path ./node_modules/epoll/build -prune -o -type f -print0 | xargs -0 -r sha256sum
  } | sort)
}
ensure_dir "$OPT" 755 root:root
ensure_dir "$OPT/releases" 755 root:root
release="$OPT/releases/$version"
staged_sum=$(tree_sum "$stage")
installed_sum=""
[ ! -d "$release" ] || installed_sum=$(tree_sum "$release")
if [ -d "$release" ] && [ "$staged_sum" = "$installed_sum" ]; then
  say "release $version already in place"
else
  if [ -d "$release" ]; then
    say "release $version differs from the one in place: replacing it; first differences (- in place, + new):"
    diff <(printf '%s\n' "$installed_sum") <(printf '%s\n' "$staged_sum") | grep '^[<>]' | head -n 5 | sed 's/^</  -/; s/^>/  +/' || true
  fi
  act rm -rf "$OPT/releases/.$version.new" "$OPT/releases/.$version.old"
  act cp -a "$stage" "$OPT/releases/.$version.new"
  if [ -d "$release" ]; then act mv -T "$release" "$OPT/releases/.$version.old"; fi
  act mv -T "$OPT/releases/.$version.new" "$release"
  act rm -rf "$OPT/releases/.$version.old"
fi

# onoff's epoll addon, built here when a compiler and Node's headers are (never shipped built).
addon="$release/node_modules/epoll/build/Release/epoll.node"
if [ -d "$release/node_modules/epoll" ] || [ "$dry" = 1 ]; then
  npm_bin="$NODE_HOME/bin/npm"
  [ -x "$npm_bin" ] || npm_bin=$(command -v npm || true)
  if [ -f "$addon" ]; then :
  elif ! command -v make >/dev/null || ! { command -v c++ >/dev/null || command -v g++ >/dev/null; }; then
    say "no C++ compiler here: onoff's addon is not built; button.backend auto uses the gpiod tools"
  elif ! python3 -c 'import shlex, json' 2>/dev/null; then
    # node-gyp runs gyp, which needs more of Python than python3-minimal has.
    say "no full python3 (node-gyp needs it): onoff's addon is not built; button.backend auto uses the gpiod tools"
  elif [ -z "$npm_bin" ] || [ ! -f "$NODE_HOME/include/node/common.gypi" ]; then
    say "no npm or Node headers under $NODE_HOME: onoff's addon is not built; button.backend auto uses the gpiod tools"
  else
    say "building onoff's addon (epoll) for this machine"
    act env -C "$release" PATH="$NODE_HOME/bin:$PATH" npm_config_nodedir="$NODE_HOME" "$npm_bin" rebuild epoll --no-audit --no-fund --loglevel=error \
      || say "building onoff's addon failed: button.backend auto uses the gpiod tools"
  fi
fi
ensure_link "releases/$version" "$OPT/current"

# --- The command, the launcher, the unit -----------------------------------------------------
systemd=0
[ ! -d /run/systemd/system ] || systemd=1
node_for_wrapper=$NODE
[ "$NODE_HOME" != "$OPT/node/current" ] || node_for_wrapper="$OPT/node/current/bin/node"
cat > "$scratch/camnode" <<EOF
#!/bin/sh
# camnode, installed by provisioning/install.sh: the release $OPT/current points at.
exec "$node_for_wrapper" $OPT/current/dist/src/main.js "\$@"
EOF
put_file "$scratch/camnode" /usr/bin/camnode 755 root:root
put_file "$stage/device/camnode-launcher" "$OPT/launcher" 755 root:root
put_file "$stage/device/camnode-update-helper" "$OPT/update-helper" 755 root:root
# The release key the root helper verifies updates with (fleet.releaseKey as PEM), root's own:
# an agent that was taken over cannot change what the helper trusts.
if [ -n "$(fact releaseKey)" ]; then
  # shellcheck disable=SC2016 # JavaScript, not shell
  "$NODE" -e '
    const { createPublicKey } = require("node:crypto");
    const raw = Buffer.from(process.argv[1], "base64");
    const der = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]);
    process.stdout.write(createPublicKey({ key: der, format: "der", type: "spki" }).export({ type: "spki", format: "pem" }));
  ' "$(fact releaseKey)" > "$scratch/release-key.pem"
  put_file "$scratch/release-key.pem" "$OPT/release-key.pem" 644 root:root
else
  say "fleet.releaseKey is not set: this node takes no updates from central ops (ctl update); install releases with this script"
fi

before_units=$changes
put_file "$stage/device/camnode.service" "$UNITS/camnode.service" 644 root:root
# The unit names the default paths; this names the config's own: storage and state must be
# mounted first and are required; the others ("-") may be missing without stopping recording
# (a share not mounted yet stops the upload, not the cameras).
extra=()
runtime=()
case "$socket_dir" in
  /run/camnode) ;;
  /run/*) runtime+=("${socket_dir#/run/}") ;;
  *) extra+=("-$socket_dir") ;;
esac
[ -z "$(fact upstreamDir)" ] || extra+=("-$(fact upstreamDir)")
[ -z "$(fact callsWatch)" ] || extra+=("-$(fact callsWatch)")
{
  echo "# Written by provisioning/install.sh from /etc/camnode/config.yaml: the config's own paths."
  echo "[Unit]"
  echo "RequiresMountsFor=$storage $state_dir"
  echo "[Service]"
  echo "Environment=CAMNODE_STATE_DIR=$state_dir"
  echo "ReadWritePaths=$storage $state_dir"
  [ "${#extra[@]}" = 0 ] || echo "ReadWritePaths=${extra[*]}"
  [ "${#runtime[@]}" = 0 ] || echo "RuntimeDirectory=${runtime[*]}"
} > "$scratch/paths.conf"
put_file "$scratch/paths.conf" "$UNITS/camnode.service.d/paths.conf" 644 root:root
for unit in camnode-update.path camnode-update.service; do
  sed "s|@STATE_DIR@|$state_dir|g" "$stage/device/$unit" > "$scratch/$unit"
  put_file "$scratch/$unit" "$UNITS/$unit" 644 root:root
done
if [ "$changes" -gt "$before_units" ] && [ "$systemd" = 1 ]; then act systemctl daemon-reload; fi
before_journald=$changes
put_file "$stage/device/journald-camnode.conf" /etc/systemd/journald.conf.d/camnode.conf 644 root:root
if [ "$changes" -gt "$before_journald" ] && [ "$systemd" = 1 ]; then act systemctl restart systemd-journald; fi

# --- Enrolment: the node's key is made here and never leaves ----------------------------------
if [ -n "$mqtt_key" ] && [ -n "$mqtt_cert" ]; then
  if [ ! -f "$mqtt_key" ]; then
    [ -d "$(dirname "$mqtt_key")" ] || ensure_dir "$(dirname "$mqtt_key")" 750 root:camnode
    act /usr/bin/camnode enroll --config "$ETC/config.yaml"
  elif [ ! -f "$mqtt_cert" ]; then
    say "waiting for the certificate: send ${mqtt_key%.key}.csr to ops, then camnode enroll --install-cert FILE"
  fi
fi

if [ "$dry" = 1 ]; then
  if [ "$changes" -gt 0 ]; then say "dry run: the changes above would be made, then camnode check run"; else say "dry run: nothing would change"; fi
  exit 0
fi

# --- Check, then start -----------------------------------------------------------------------
# A restart owed by an earlier run that stopped before making it (a power cut, say).
pending="$OPT/.restart-pending"
if [ "$changes" -gt 0 ] && [ "$systemd" = 1 ]; then touch "$pending"; fi
say "camnode check"
set +e
runuser -u camnode -- /usr/bin/camnode check --config "$ETC/config.yaml"
checked=$?
set -e
if [ "$checked" != 0 ]; then
  if [ "$had_install" = 1 ] && [ "${#undo[@]}" -gt 0 ]; then
    # The node was working: the release and config it ran are put back, never left half-changed.
    put_back
    rm -f "$pending"
    if [ "$systemd" = 1 ]; then systemctl daemon-reload; fi
    say "camnode check failed with the new release or config (the rows above say what to fix): the previous ones are back in place, as they were; fix it and run $PROG again"
  else
    say "camnode $version is installed but NOT started: camnode check found a failure (the rows above say what to fix); then run $PROG again"
  fi
  exit 1
fi
if [ "$systemd" = 1 ]; then
  systemctl is-enabled --quiet camnode 2>/dev/null || act systemctl enable camnode
  systemctl is-enabled --quiet camnode-update.path 2>/dev/null || act systemctl enable camnode-update.path
  systemctl is-active --quiet camnode-update.path || act systemctl start camnode-update.path
  if ! systemctl is-active --quiet camnode; then act systemctl start camnode
  elif [ -f "$pending" ]; then act systemctl restart camnode
  fi
  rm -f "$pending"
  say "camnode $version is running: systemctl status camnode; journalctl -u camnode"
else
  say "systemd is not running here: camnode $version is installed but not started (on the box: systemctl enable --now camnode)"
fi
if [ "$changes" = 0 ]; then say "nothing changed"; else say "$changes change(s) made"; fi
