#!/bin/sh
# Checks that the shipped example configuration is accepted by
# `postern -t`, with the build's modules and a stand-in users file (the
# real paths exist only on an installed system).
#
# Usage: check-example-conf.sh POSTERN MODULES_DIR CONF. Exit 0 ok, 1 not.
set -eu

if [ $# -ne 3 ]; then
	echo "usage: $0 POSTERN MODULES_DIR CONF" >&2
	exit 2
fi
postern=$1
modules_dir=$2
conf=$3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One user, so the passwd module has something to load.
echo 'example:{PLAIN}example' >"$tmp/users"
sed -e "s|\"/etc/postern/users\"|\"$tmp/users\"|" \
	-e "s|^# *modules_dir = .*|modules_dir = \"$modules_dir\";|" \
	"$conf" >"$tmp/postern.conf"
if ! grep -q "^modules_dir = \"$modules_dir\";" "$tmp/postern.conf" ||
	! grep -q "\"$tmp/users\"" "$tmp/postern.conf"; then
	echo "FAIL: $conf no longer has the modules_dir or users lines" \
		"this check rewrites"
	exit 1
fi
"$postern" -t -c "$tmp/postern.conf"
