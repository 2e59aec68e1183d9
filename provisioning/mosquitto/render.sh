#!/usr/bin/env bash
# Renders the fleet broker's Mosquitto config and ACL from the templates next to this script.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: render.sh PREFIX OUTDIR [OPS_NAME ...]

Writes OUTDIR/camnode.conf and OUTDIR/camnode.acl for the topic prefix PREFIX (the nodes'
mqtt.prefix, e.g. camnode). Each OPS_NAME (as given to `fleet-ca.sh ops`, with or without
the "ops:" the certificate's CN carries) may read everything under PREFIX and send commands.
Re-render and reload the broker (SIGHUP) after adding or removing ops people.

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
ops=()
for name in "$@"; do
  name=${name#ops:}
  [[ "$name" =~ ^[a-z0-9._-]{1,60}$ ]] || { echo "render.sh: bad ops name '$name'" >&2; exit 2; }
  ops+=("$name")
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

# The block between the @OPS_BEGIN@ and @OPS_END@ markers is repeated once per ops name.
awk -v prefix="$prefix" -v names="${ops[*]:-}" '
  BEGIN { n = split(names, list, " ") }
  /@OPS_BEGIN@/ { inblock = 1; block = ""; next }
  /@OPS_END@/ {
    inblock = 0
    for (i = 1; i <= n; i++) { b = block; gsub(/@OPS_NAME@/, list[i], b); printf "%s\n", b }
    next
  }
  { gsub(/@PREFIX@/, prefix) }
  inblock { block = block (block == "" ? "" : "\n") $0; next }
  { print }
' "$here/acl.template" >"$out/camnode.acl.tmp"

mv "$out/camnode.conf.tmp" "$out/camnode.conf"
mv "$out/camnode.acl.tmp" "$out/camnode.acl"
echo "$out/camnode.conf $out/camnode.acl"
