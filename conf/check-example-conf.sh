#!/bin/sh
# Checks that the shipped example configuration is accepted by
# `postern -t`, with the build's modules, a stand-in users file and
# stand-in certificates (the real paths, /etc/postern/users and the Let's
# Encrypt files, exist only on an installed system). `postern -t` loads
# the certificates and checks each key against its certificate, so the
# stand-ins are a fresh self-signed pair. The commented-out SNI example is
# checked too, uncommented, with a second pair.
#
# Usage: check-example-conf.sh POSTERN MODULES_DIR CONF.
# Exit 0 ok, 1 not, 77 skipped (no openssl command to make certificates).
set -eu

if [ $# -ne 3 ]; then
	echo "usage: $0 POSTERN MODULES_DIR CONF" >&2
	exit 2
fi
postern=$1
modules_dir=$2
conf=$3
le=/etc/letsencrypt/live

if ! command -v openssl >/dev/null 2>&1; then
	echo "openssl not installed: skipped"
	exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One user, so the passwd module has something to load.
echo 'example:{PLAIN}example' >"$tmp/users"
for name in org net; do
	if ! openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
		-subj "/CN=pop.example.$name" -keyout "$tmp/$name.key" \
		-out "$tmp/$name.crt" 2>"$tmp/openssl.log"; then
		cat "$tmp/openssl.log"
		echo "FAIL: cannot make a stand-in certificate"
		exit 1
	fi
done

rewrite() {
	sed -e "s|\"/etc/postern/users\"|\"$tmp/users\"|" \
		-e "s|^# *modules_dir = .*|modules_dir = \"$modules_dir\";|" \
		-e "s|\"$le/pop.example.org/fullchain.pem\"|\"$tmp/org.crt\"|" \
		-e "s|\"$le/pop.example.org/privkey.pem\"|\"$tmp/org.key\"|" \
		-e "s|\"$le/pop.example.net/fullchain.pem\"|\"$tmp/net.crt\"|" \
		-e "s|\"$le/pop.example.net/privkey.pem\"|\"$tmp/net.key\"|" \
		"$@"
}

rewrite "$conf" >"$tmp/postern.conf"
for line in "^modules_dir = \"$modules_dir\";" "\"$tmp/users\"" \
	"certificate = \"$tmp/org.crt\";" "key = \"$tmp/org.key\";"; do
	if ! grep -q "$line" "$tmp/postern.conf"; then
		echo "FAIL: $conf no longer has the modules_dir, users," \
			"certificate or key lines this check rewrites"
		exit 1
	fi
done
"$postern" -t -c "$tmp/postern.conf"

# The same with the commented-out sni list of the tls group enabled.
rewrite -e '/^ *# sni = (/,/^ *# );/s/^\( *\)# /\1/' "$conf" \
	>"$tmp/postern-sni.conf"
if ! grep -q "^ *sni = (" "$tmp/postern-sni.conf" ||
	! grep -q "certificate = \"$tmp/net.crt\";" "$tmp/postern-sni.conf"; then
	echo "FAIL: $conf no longer has the commented-out sni example" \
		"this check enables"
	exit 1
fi
"$postern" -t -c "$tmp/postern-sni.conf"
