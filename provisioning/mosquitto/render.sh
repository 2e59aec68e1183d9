#!/usr/bin/env bash
# Renders the fleet broker's Mosquitto config and ACL from the templates next to this script.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: render.sh PREFIX OUTDIR [--roster FILE] [NAME[:ROLE] ...]

Writes OUTDIR/camnode.conf and OUTDIR/camnode.acl for the topic prefix PREFIX (the nodes'
mqtt.prefix, e.g. camnode). The principals come from the fleet CA's roster (--roster
CA_DIR/roster: "ops:NAME ROLE" lines, kept by `fleet-ca.sh ops NAME --role ROLE`) and from
NAME:ROLE arguments (NAME with or without the "ops:" its CN carries; a NAME without a role is
rendered as ops, which is what certificates issued before roles say in their OU). Each reads every node's status, state and events,
only its own replies, and may send the commands its role allows:
  viewer     state incidents incident footage report ping
  ops        + lock hold note still snapshot sync
  custodian  + dispose (and its old name release) disclose
  admin      + config update, and writes <prefix>/_fleet/ (the retained CRL)
Re-render and reload the broker (SIGHUP) after adding, changing or removing principals.

Where the files will live on the broker (environment, defaults shown):
  PORT=8883  BIND_ADDRESS=            (empty: all interfaces)
  TLS_DIR=/etc/mosquitto/certs         holds ca.crt, crl.pem, server.crt, server.key
  ACL_FILE=/etc/mosquitto/camnode.acl  PERSIST_DIR=/var/lib/mosquitto
  LOG_DEST=stderr                      (journald under systemd; or "file /var/log/mosquitto/mosquitto.log")
  MAX_PACKET_SIZE=4194304
EOF
}

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
prefix=$1 out=$2
shift 2

# One or more topic levels, no wildcards, no $ (reserved for the broker), no empty levels.
[[ "$prefix" =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ ]] || { echo "render.sh: bad prefix '$prefix'" >&2; exit 2; }
# The commands each role may send (CONTRACT §7; src/commands/roles.ts, checked by a test).
role_commands() {
  local viewer="state incidents incident footage report ping"
  local ops="$viewer lock hold note still snapshot sync"
  local custodian="$ops dispose release disclose"
  case "$1" in
    viewer) echo "$viewer" ;;
    ops) echo "$ops" ;;
    custodian) echo "$custodian" ;;
    admin) echo "$custodian config update" ;;
  esac
}

entries=()
add_principal() {
  local name=${1#ops:} role=$2
  [[ "$name" =~ ^[a-z0-9._-]{1,60}$ ]] || { echo "render.sh: bad ops name '$name'" >&2; exit 2; }
  [[ "$role" =~ ^(viewer|ops|custodian|admin)$ ]] || { echo "render.sh: '$role' (for $name) is not viewer, ops, custodian or admin" >&2; exit 2; }
  local e
  for e in "${entries[@]}"; do
    if [ "${e%%:*}" = "$name" ]; then
      [ "${e#*:}" = "$role" ] && return 0
      echo "render.sh: ops:$name is given twice, as ${e#*:} and as $role" >&2; exit 2
    fi
  done
  entries+=("$name:$role")
}
while [ $# -gt 0 ]; do
  case "$1" in
    --roster)
      if [ $# -lt 2 ] || [ ! -f "$2" ]; then echo "render.sh: --roster needs the roster file" >&2; exit 2; fi
      while read -r cn role _; do
        if [ -z "$cn" ] || [ "${cn:0:1}" = "#" ]; then continue; fi
        add_principal "$cn" "$role"
      done <"$2"
      shift 2 ;;
    *:*:*) n=${1#ops:}; add_principal "${n%%:*}" "${n#*:}"; shift ;;
    ops:*) add_principal "$1" ops; shift ;;
    *:*) add_principal "${1%%:*}" "${1#*:}"; shift ;;
    *) add_principal "$1" ops; shift ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

# The values never hold "|" (checked above or set by ops), so it is a safe sed delimiter.
sed -e "s|@PREFIX@|$prefix|g" \
    -e "s|@PORT@|${PORT:-8883}|g" \
    -e "s|@BIND_ADDRESS@|${BIND_ADDRESS:-}|g" \
    -e "s|@TLS_DIR@|${TLS_DIR:-/etc/mosquitto/certs}|g" \
    -e "s|@ACL_FILE@|${ACL_FILE:-/etc/mosquitto/camnode.acl}|g" \
    -e "s|@PERSIST_DIR@|${PERSIST_DIR:-/var/lib/mosquitto}|g" \
    -e "s|@LOG_DEST@|${LOG_DEST:-stderr}|g" \
    -e "s|@MAX_PACKET_SIZE@|${MAX_PACKET_SIZE:-4194304}|g" \
    -e 's/ *$//' \
    "$here/camnode.conf.template" >"$out/camnode.conf.tmp"

# The block between the @OPS_BEGIN@ and @OPS_END@ markers is repeated once per principal, its
# @OPS_WRITES@ line replaced by the topics its role may write.
acl_part() { # before | block | after
  awk -v want="$1" '
    /@OPS_BEGIN@/ { part = "block"; next }
    /@OPS_END@/ { part = "after"; next }
    (part == "" ? "before" : part) == want { print }
  ' "$here/acl.template"
}
{
  acl_part before
  block=$(acl_part block)
  for e in "${entries[@]}"; do
    name=${e%%:*} role=${e#*:}
    while IFS= read -r line; do
      case "$line" in
        *@OPS_WRITES@*)
          echo "# role: $role"
          for c in $(role_commands "$role"); do echo "topic write @PREFIX@/+/cmd/$c"; done
          [ "$role" != admin ] || echo "topic write @PREFIX@/_fleet/#"
          ;;
        *) echo "${line//@OPS_NAME@/$name}" ;;
      esac
    done <<<"$block"
  done
  acl_part after
} | sed -e "s|@PREFIX@|$prefix|g" >"$out/camnode.acl.tmp"

mv "$out/camnode.conf.tmp" "$out/camnode.conf"
mv "$out/camnode.acl.tmp" "$out/camnode.acl"
echo "$out/camnode.conf $out/camnode.acl"
