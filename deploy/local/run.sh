#!/usr/bin/env bash
# `make run`: the embedded PostgreSQL, a certificate, and one node in the foreground.
# Ctrl-C stops the node (clients get <system-shutdown/>) and then the database.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin="${CONCLAVE_BIN:-$root/.build/debug/conclave}"

"$root/deploy/local/db.sh" start
"$root/deploy/local/cert.sh" localhost
trap '"$root/deploy/local/db.sh" stop' EXIT

cat <<MSG

Conclave is starting: domain localhost, MUC at conference.localhost,
clients on port 5222 (STARTTLS) and 5223 (Direct TLS), self-signed certificate
in .conclave/tls/localhost.crt.

Add a user (in another terminal, from this directory):
    $bin user add romeo@localhost --password secret
Then connect any XMPP client as romeo@localhost to 127.0.0.1:5222 (accept the
self-signed certificate), or try:
    openssl s_client -connect 127.0.0.1:5222 -starttls xmpp -xmpphost localhost
Ctrl-C stops the node and the database.

MSG
set +e
"$bin" serve --config "$root/deploy/local/conclave.yaml" "$@"
status=$?
set -e
exit $status
