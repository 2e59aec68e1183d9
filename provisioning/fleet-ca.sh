#!/usr/bin/env bash
# The fleet's private certificate authority, for central ops (bash + openssl, nothing else).
# The broker trusts only this CA and takes each client's identity from its certificate's CN,
# so what this script signs decides who may publish what (see provisioning/mosquitto/acl.template).
set -euo pipefail
umask 077

PROG=$(basename "$0")

usage() {
  cat <<EOF
Usage:
  $PROG init   DIR [--days N]                     create the fleet CA in DIR (refuses an existing one)
  $PROG node   DIR NODE_ID [--csr FILE] [--days N] [--renew]
                                                  node client certificate, CN = NODE_ID
  $PROG ops    DIR NAME --role ROLE [--days N] [--renew]
                                                  ops client certificate, CN = ops:NAME, OU = ROLE:
                                                  viewer, ops, custodian or admin (see below)
  $PROG server DIR HOSTNAME [IP|DNS ...] [--days N] [--renew]
                                                  the broker's server certificate (SANs: all names)
  $PROG revoke DIR NODE_ID|ops:NAME|server:HOSTNAME
                                                  revoke a certificate and rewrite DIR/crl.pem
  $PROG crl    DIR [--publish]                    re-sign DIR/crl.pem (valid 30 days: renew weekly);
                                                  --publish also installs it on the broker, reloads
                                                  the broker and publishes it retained (see below)
  $PROG roster DIR                                the principals and their roles (ACL input)

Layout of DIR (keys are mode 0600):
  ca.key ca.crt crl.pem         the CA; copy ca.crt (and crl.pem) to the broker and ca.crt to nodes
  nodes/NODE_ID.{key,crt}       NODE_ID: [a-z0-9-]{1,64}, the node's id in its config
  ops/NAME.{key,crt}            NAME: [a-z0-9._-]{1,60}; the broker sees the user "ops:NAME"
  roster                        "ops:NAME ROLE" per principal: render the broker's ACL from it
  server/HOSTNAME.{key,crt}     for the broker's TLS listener
  db/                           openssl's issuing database (serials, index, revocations)

Keys are EC P-256: small certificates and cheap handshakes on a Raspberry Pi, and accepted by
Mosquitto, EMQX, HiveMQ and AWS IoT alike.
Roles (CONTRACT §7), each with what the one before may do: viewer (state, incidents, footage,
report, ping) < ops (lock, hold, note, still, snapshot, sync) < custodian (dispose, disclose) <
admin (config, update). A role is fixed in the certificate: to change it, revoke ops:NAME and
issue again with the new --role.
Validity: CA 10 years, nodes 5 years, ops 1 year, server 825 days, CRL 30 days (override
with --days). An expired CRL makes Mosquitto refuse every client: run "crl --publish" weekly
(a systemd timer example is in docs/fleet-setup.md).
crl --publish takes from the environment: CRL_DEST (the broker's crlfile, default
/etc/mosquitto/certs/crl.pem), RELOAD (default "systemctl reload mosquitto"), and for the
retained copy BROKER_HOST (default localhost), BROKER_PORT (8883), PREFIX (camnode),
PUBLISH_AS (an admin principal's name in DIR/ops, default admin). Issuing again for a name that already has a certificate changes nothing;
--renew signs a fresh certificate for the existing key.
--csr FILE (node only): sign a request made on the node itself, so its key never leaves it
  (openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout node.key
   -subj /CN=NODE_ID -out node.csr); the CN is set to NODE_ID whatever the request says.
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }

# Node ids are also MQTT topic levels and the broker's usernames: no wildcards, slashes or
# colons can appear, which is what keeps "ops:NAME" users apart from every node.
NODE_RE='^[a-z0-9-]{1,64}$'
OPS_RE='^[a-z0-9._-]{1,60}$'
HOST_RE='^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$'
IPV4_RE='^[0-9]{1,3}(\.[0-9]{1,3}){3}$'

# The subjects this CA issues; the broker takes the CN as the username.
subject_for() {
  case "$1" in
    ops:*) echo "/O=camnode fleet/OU=${role:?}/CN=$1" ;;
    server:*) echo "/O=camnode fleet/OU=broker/CN=${1#server:}" ;;
    *) echo "/O=camnode fleet/OU=nodes/CN=$1" ;;
  esac
}

CA_DAYS=3650
CRL_DAYS=30
ROLES_RE='^(viewer|ops|custodian|admin)$'

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help|help) usage; exit 0 ;; esac
cmd=$1; shift
[ $# -ge 1 ] || die "$cmd: missing DIR (see --help)"
DIR=$1; shift

# Options may follow the positional arguments.
days=""; csr=""; renew=0; role=""; publish=0; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --days) [ $# -ge 2 ] || die "--days needs a value"; days=$2; shift 2 ;;
    --csr) [ $# -ge 2 ] || die "--csr needs a file"; csr=$2; shift 2 ;;
    --renew) renew=1; shift ;;
    --role) [ $# -ge 2 ] || die "--role needs viewer, ops, custodian or admin"; role=$2; shift 2 ;;
    --publish) publish=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -z "$days" ] || [[ "$days" =~ ^[1-9][0-9]{0,4}$ ]] || die "--days must be a whole number of days"
[ -z "$csr" ] || [ "$cmd" = node ] || die "--csr is for node certificates only"
[ -z "$role" ] || [ "$cmd" = ops ] || die "--role is for ops certificates only"
[ "$publish" = 0 ] || [ "$cmd" = crl ] || die "--publish is for crl only"

# A minimal `openssl ca` setup: it keeps serials unique and records what was issued, which is
# what revocation (a stolen node) needs. Rewritten on every run; the state lives in db/.
write_openssl_cnf() {
  cat >"$DIR/db/openssl.cnf" <<EOF
[ ca ]
default_ca = fleet
[ fleet ]
dir = $DIR
database = \$dir/db/index.txt
serial = \$dir/db/serial
crlnumber = \$dir/db/crlnumber
new_certs_dir = \$dir/db/issued
certificate = \$dir/ca.crt
private_key = \$dir/ca.key
default_md = sha256
default_crl_days = $CRL_DAYS
policy = fleet_policy
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = yes
[ fleet_policy ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ client_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ server_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = \${ENV::FLEET_SAN}
EOF
}

need_ca() {
  if [ ! -f "$DIR/ca.key" ] || [ ! -f "$DIR/ca.crt" ] || [ ! -d "$DIR/db" ]; then die "no fleet CA in $DIR (run: $PROG init $DIR)"; fi
  DIR=$(cd "$DIR" && pwd)
  export FLEET_SAN=DNS:unused
  write_openssl_cnf
}

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# The roster: one "ops:NAME ROLE" line per principal, the input of the broker's ACL.
roster_role() { if [ -f "$DIR/roster" ]; then awk -v cn="$1" '$1 == cn { print $2 }' "$DIR/roster"; fi; }
roster_remove() {
  [ -f "$DIR/roster" ] || return 0
  awk -v cn="$1" '$1 != cn' "$DIR/roster" >"$DIR/roster.tmp"
  mv "$DIR/roster.tmp" "$DIR/roster"
}
roster_set() {
  roster_remove "$1"
  echo "$1 $2" >>"$DIR/roster"
  sort -o "$DIR/roster" "$DIR/roster"
  chmod 644 "$DIR/roster"
}

# Installs the CRL where the broker reads it, reloads the broker (an expired crlfile makes
# Mosquitto refuse every client) and publishes it retained for the nodes (<prefix>/_fleet/crl).
publish_crl() {
  local dest=${CRL_DEST:-/etc/mosquitto/certs/crl.pem} as=${PUBLISH_AS:-admin}
  if ! install -m 644 "$DIR/crl.pem" "$dest.tmp" || ! mv "$dest.tmp" "$dest"; then die "could not install the CRL at $dest"; fi
  sh -c "${RELOAD:-systemctl reload mosquitto}" || die "the broker did not reload (RELOAD=${RELOAD:-systemctl reload mosquitto})"
  [ -f "$DIR/ops/$as.crt" ] || die "no admin principal ops:$as in $DIR/ops to publish as (PUBLISH_AS)"
  command -v mosquitto_pub >/dev/null || die "mosquitto_pub not found (apt-get install mosquitto-clients)"
  mosquitto_pub -h "${BROKER_HOST:-localhost}" -p "${BROKER_PORT:-8883}" --cafile "$DIR/ca.crt" \
    --cert "$DIR/ops/$as.crt" --key "$DIR/ops/$as.key" -q 1 -r -t "${PREFIX:-camnode}/_fleet/crl" -f "$DIR/crl.pem" \
    || die "could not publish the CRL to ${PREFIX:-camnode}/_fleet/crl"
  echo "installed $dest, reloaded the broker, published ${PREFIX:-camnode}/_fleet/crl (retained)"
}

gen_crl() {
  openssl ca -batch -config "$DIR/db/openssl.cnf" -gencrl -out "$DIR/crl.pem.tmp" 2>"$DIR/db/last-error" \
    || { cat "$DIR/db/last-error" >&2; die "could not write the CRL"; }
  chmod 644 "$DIR/crl.pem.tmp"
  mv "$DIR/crl.pem.tmp" "$DIR/crl.pem"
}

# issue KIND FILEBASE SUBJECT EXT DEFAULT_DAYS: key (unless a CSR is given) + signed certificate.
issue() {
  local kind=$1 base=$2 subj=$3 ext=$4 ndays=${days:-$5}
  local key="$base.key" crt="$base.crt" req="$base.csr.tmp"
  mkdir -p "$(dirname "$base")"
  if [ -f "$crt" ] && [ "$renew" = 0 ]; then
    echo "$PROG: $crt already exists; nothing to do (--renew to sign a new certificate)" >&2
    return 0
  fi
  if [ -n "$csr" ]; then
    [ -f "$csr" ] || die "no such CSR: $csr"
    openssl req -in "$csr" -noout -verify 2>/dev/null || die "$csr is not a valid, self-signed request"
    cp "$csr" "$req"
  else
    if [ ! -f "$key" ]; then
      [ "$renew" = 0 ] || die "--renew: no key at $key"
      new_key "$key"
    fi
    openssl req -new -config "$DIR/db/openssl.cnf" -key "$key" -out "$req" 2>/dev/null
  fi
  # -subj replaces whatever subject the request carried: the CN is ours to decide.
  if ! openssl ca -batch -notext -config "$DIR/db/openssl.cnf" -extensions "$ext" -days "$ndays" \
      -subj "$subj" -in "$req" -out "$crt.tmp" 2>"$DIR/db/last-error"; then
    rm -f "$req" "$crt.tmp"
    cat "$DIR/db/last-error" >&2
    die "signing the $kind certificate failed"
  fi
  rm -f "$req"
  chmod 644 "$crt.tmp"
  mv "$crt.tmp" "$crt"
  if [ -n "$csr" ]; then
    echo "$crt (signed from $csr, valid $ndays days)"
  else
    echo "$crt (key: $key, valid $ndays days)"
  fi
}

case "$cmd" in
  init)
    [ ${#args[@]} -eq 0 ] || die "init: unexpected arguments ${args[*]}"
    if [ -e "$DIR/ca.key" ] || [ -e "$DIR/ca.crt" ]; then die "$DIR already holds a CA; refusing to overwrite it"; fi
    mkdir -p "$DIR/db/issued"
    DIR=$(cd "$DIR" && pwd)
    export FLEET_SAN=DNS:unused
    write_openssl_cnf
    : >"$DIR/db/index.txt"
    echo "unique_subject = no" >"$DIR/db/index.txt.attr"
    # Random starting serials: two CAs made by mistake never issue look-alike certificates.
    openssl rand -hex 16 | sed 's/^/7/' | cut -c1-32 >"$DIR/db/serial"
    echo 1000 >"$DIR/db/crlnumber"
    new_key "$DIR/ca.key"
    openssl req -new -x509 -config "$DIR/db/openssl.cnf" -key "$DIR/ca.key" -days "${days:-$CA_DAYS}" \
      -subj "/O=camnode fleet/CN=camnode fleet CA $(date -u +%Y%m%d)" -extensions ca_ext \
      -set_serial "0x$(openssl rand -hex 16)" -out "$DIR/ca.crt"
    chmod 644 "$DIR/ca.crt"
    gen_crl
    echo "fleet CA: $DIR/ca.crt (key $DIR/ca.key, keep it offline), CRL: $DIR/crl.pem"
    ;;
  node)
    [ ${#args[@]} -eq 1 ] || die "node: expected exactly one NODE_ID"
    id=${args[0]}
    [[ "$id" =~ $NODE_RE ]] || die "node id '$id' must match [a-z0-9-]{1,64}"
    need_ca
    issue node "$DIR/nodes/$id" "$(subject_for "$id")" client_ext 1825
    ;;
  ops)
    [ ${#args[@]} -eq 1 ] || die "ops: expected exactly one NAME"
    name=${args[0]}
    [[ "$name" =~ $OPS_RE ]] || die "ops name '$name' must match [a-z0-9._-]{1,60}"
    [ -n "$role" ] || die "ops: --role is required: viewer, ops, custodian or admin"
    [[ "$role" =~ $ROLES_RE ]] || die "--role '$role' is not viewer, ops, custodian or admin"
    need_ca
    held=$(roster_role "ops:$name")
    if [ -n "$held" ] && [ "$held" != "$role" ] && [ -f "$DIR/ops/$name.crt" ]; then
      die "ops:$name holds a $held certificate; revoke ops:$name first, then issue it as $role"
    fi
    issue ops "$DIR/ops/$name" "$(subject_for "ops:$name")" client_ext 365
    roster_set "ops:$name" "$role"
    echo "ops:$name is $role (recorded in $DIR/roster; re-render the broker's ACL and reload it)"
    ;;
  roster)
    [ ${#args[@]} -eq 0 ] || die "roster: unexpected arguments ${args[*]}"
    [ -f "$DIR/roster" ] && cat "$DIR/roster"
    ;;
  server)
    [ ${#args[@]} -ge 1 ] || die "server: expected HOSTNAME [IP|DNS ...]"
    host=${args[0]}
    [[ "$host" =~ $HOST_RE ]] || die "'$host' is not a host name"
    san="DNS:$host"
    for extra in "${args[@]:1}"; do
      if [[ "$extra" =~ $IPV4_RE ]] || [[ "$extra" == *:* && "$extra" =~ ^[0-9A-Fa-f:.]+$ ]]; then
        san="$san,IP:$extra"
      elif [[ "$extra" =~ $HOST_RE ]]; then
        san="$san,DNS:$extra"
      else
        die "'$extra' is neither an IP address nor a host name"
      fi
    done
    need_ca
    export FLEET_SAN=$san
    issue server "$DIR/server/$host" "$(subject_for "server:$host")" server_ext 825
    ;;
  revoke)
    [ ${#args[@]} -eq 1 ] || die "revoke: expected NODE_ID, ops:NAME or server:HOSTNAME"
    who=${args[0]}
    case "$who" in
      ops:*) base="$DIR/ops/${who#ops:}" ;;
      server:*) base="$DIR/server/${who#server:}" ;;
      *) [[ "$who" =~ $NODE_RE ]] || die "'$who' is not a node id"; base="$DIR/nodes/$who" ;;
    esac
    need_ca
    [ -f "$base.crt" ] || die "no certificate at $base.crt"
    # Every valid certificate with this subject is revoked, earlier ones from --renew too: a
    # stolen node may hold any of them. (index.txt: status, expiry, revoked, serial, file, subject)
    # By CN: an ops principal's subject names its role, which may have changed since.
    cn=${who#server:}
    count=0
    while read -r ser; do
      openssl ca -batch -config "$DIR/db/openssl.cnf" -revoke "$DIR/db/issued/$ser.pem" \
        -crl_reason keyCompromise 2>"$DIR/db/last-error" || { cat "$DIR/db/last-error" >&2; die "revoking $ser failed"; }
      count=$((count + 1))
    done < <(awk -F'\t' -v cn="/CN=$cn" '$1 == "V" && substr($6, length($6) - length(cn) + 1) == cn { print $4 }' "$DIR/db/index.txt")
    [ "$count" -gt 0 ] || die "$who has no valid certificate from this CA"
    gen_crl
    case "$who" in ops:*) roster_remove "$who" ;; esac
    # Move the files aside so the name can be enrolled again with a fresh key.
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    mv "$base.crt" "$base.crt.revoked-$stamp"
    [ ! -f "$base.key" ] || mv "$base.key" "$base.key.revoked-$stamp"
    echo "revoked $who ($count certificate(s)); copy $DIR/crl.pem to the broker and reload it (SIGHUP)"
    ;;
  crl)
    need_ca
    gen_crl
    echo "$DIR/crl.pem (valid $CRL_DAYS days)"
    [ "$publish" = 0 ] || publish_crl
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
