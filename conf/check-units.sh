#!/bin/sh
# Runs `systemd-analyze verify` on the configured systemd units.
#
# Usage: check-units.sh UNITDIR [DAEMON]
#   UNITDIR  the build directory holding the configured units
#   DAEMON   the built postern binary (default: none)
#
# systemd refuses a unit whose ExecStart= binary does not exist, and the
# configured path (e.g. /usr/local/bin/postern) exists only after
# `meson install`. So the units are copied to a temporary directory with
# that path replaced by DAEMON when it was built, else by /bin/true.
# Any output of systemd-analyze (even a warning such as an unknown key)
# fails the check. Exit 0 ok, 1 failure, 77 skipped (no systemd-analyze).
set -eu

units="postern.socket postern-pop3s.socket postern.service postern-inetd.socket postern-inetd@.service"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 UNITDIR [DAEMON]" >&2
	exit 2
fi
unitdir=$1
daemon=${2:-}
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-analyze not installed: skipped"
	exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

status=0
for u in $units; do
	if [ ! -f "$unitdir/$u" ]; then
		echo "FAIL: $unitdir/$u missing"
		exit 1
	fi
	if grep -n '@[A-Z_]*@' "$unitdir/$u"; then
		echo "FAIL: $u: unsubstituted @VARIABLE@ above"
		status=1
	fi
	cp "$unitdir/$u" "$tmp/$u"
done

# The binary every ExecStart= names (they name the same one).
bin=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$tmp/postern.service")
case $bin in
/*) ;;
*)
	echo "FAIL: postern.service: ExecStart= path '$bin' is not absolute"
	exit 1
	;;
esac
if [ ! -x "$bin" ]; then
	if [ -n "$daemon" ] && [ -x "$daemon" ]; then
		stand_in=$(cd "$(dirname "$daemon")" && pwd)/$(basename "$daemon")
	else
		stand_in=/bin/true
	fi
	echo "$bin not installed: verifying with $stand_in in its place"
	for u in postern.service postern-inetd@.service; do
		sed "s|^\(Exec[A-Za-z]*=\)$bin|\1$stand_in|" "$tmp/$u" \
			>"$tmp/$u.new"
		mv "$tmp/$u.new" "$tmp/$u"
	done
fi

cd "$tmp"
# --man=no: the man pages named in Documentation= are not installed yet.
# postern-inetd@1.service: a template is verified through an instance.
if ! out=$(systemd-analyze verify --man=no postern.socket \
	postern-pop3s.socket postern.service postern-inetd.socket \
	"$tmp/postern-inetd@1.service" 2>&1); then
	status=1
fi
if [ -n "$out" ]; then
	printf '%s\n' "$out"
	status=1
fi
if [ $status -eq 0 ]; then
	echo "systemd-analyze verify: $units: ok"
else
	echo "FAIL: systemd-analyze verify"
fi
exit $status
