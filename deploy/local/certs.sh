#!/usr/bin/env bash
# `make certs`: a local certificate authority and one certificate per node, signed by
# it, with the `openssl` command. Existing files are kept (a new CA re-issues every
# node certificate).
#   deploy/local/certs.sh [N]      N node certificates (default 3)
# Files (in $CONCLAVE_TLS_DIR, default .conclave/tls/):
#   ca.crt, ca.key               the CA: clients and conclave-spec --ca-file trust ca.crt
#   nodeI.crt, nodeI.key         node I: CN nodeI.DOMAIN; names DOMAIN, conference.DOMAIN,
#                                nodeI.DOMAIN and 127.0.0.1; for TLS servers and clients
#                                (client connections and mutual TLS between nodes)
# CONCLAVE_CERTS_DOMAIN: the XMPP domain (default localhost).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
count="${1:-3}"
dir="${CONCLAVE_TLS_DIR:-$root/.conclave/tls}"
domain="${CONCLAVE_CERTS_DOMAIN:-localhost}"
case "$count" in '' | *[!0-9]* | 0) echo "usage: $0 [N]   (N: how many node certificates)" >&2; exit 2 ;; esac
command -v openssl >/dev/null || { echo "openssl is needed to create certificates (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077

fresh_ca=0
if [ ! -s ca.crt ] || [ ! -s ca.key ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -keyout ca.key -out ca.crt -subj "/CN=Conclave local CA for $domain" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1
    chmod 644 ca.crt
    fresh_ca=1
    echo "created the CA $dir/ca.crt"
fi

for ((i = 1; i <= count; i++)); do
    name="node$i"
    if [ "$fresh_ca" = 0 ] && [ -s "$name.crt" ] && [ -s "$name.key" ] \
        && openssl verify -CAfile ca.crt "$name.crt" >/dev/null 2>&1; then
        continue
    fi
    cat >"$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$domain,DNS:conference.$domain,DNS:$name.$domain,IP:127.0.0.1
EXT
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$name.$domain" >/dev/null 2>&1
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
        -days 825 -sha256 -extfile "$name.ext" -out "$name.crt" >/dev/null 2>&1
    rm -f "$name.csr" "$name.ext"
    chmod 644 "$name.crt"
    echo "created $dir/$name.crt (signed by ca.crt)"
done
