#!/usr/bin/env bash
# Creates a self-signed certificate for a domain (and its conference. subdomain)
# under .conclave/tls/, unless one is there already.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
domain="${1:-localhost}"
dir="$root/.conclave/tls"
cert="$dir/$domain.crt"
key="$dir/$domain.key"
[ -f "$cert" ] && [ -f "$key" ] && exit 0
command -v openssl >/dev/null || { echo "openssl is needed to create a certificate (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 825 \
    -keyout "$key" -out "$cert" -subj "/CN=$domain" \
    -addext "subjectAltName=DNS:$domain,DNS:conference.$domain" >/dev/null 2>&1
chmod 600 "$key"
echo "created a self-signed certificate for $domain in $dir"
