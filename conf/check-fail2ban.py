#!/usr/bin/env python3
"""Checks the fail2ban filter against postern's log lines.

The failregex of fail2ban/postern.conf must find the client address in
postern's "auth failed:" line (see postern(8), LOGGING), and must not match
any other line postern logs. Uses Python's re after turning <HOST> into an
address group, so fail2ban itself is not needed; when fail2ban-regex and
fail2ban's common.conf are installed, the whole filter (prefix included)
is also run on a syslog-style sample.

Usage: check-fail2ban.py FILTER. Exit 0 ok, 1 failure.
"""
import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile

HOST = r"(?P<host>[0-9A-Fa-f.:]+)"

# (message as postern logs it, expected host or None)
SAMPLES = [
    ("auth failed: user=alice peer=192.0.2.7", "192.0.2.7"),
    ("auth failed: user=bob peer=2001:db8::1", "2001:db8::1"),
    ("<5>auth failed: user=bob peer=203.0.113.9", "203.0.113.9"),
    ("auth failed: user= peer=198.51.100.1", "198.51.100.1"),
    # A user name crafted to look like a peer: the real peer (last) wins.
    ("auth failed: user=x?peer=10.0.0.1 peer=198.51.100.2",
     "198.51.100.2"),
    ("auth failed: user=x peer=10.0.0.1 peer=198.51.100.3",
     "198.51.100.3"),
    ("login: user=alice method=USER tls=no peer=192.0.2.7 pid=4242", None),
    ("connect: peer=192.0.2.7 port=50123 listener=pop3", None),
    ("logout: user=alice peer=192.0.2.7 pid=4242 retrieved=1/812 "
     "deleted=0 left=3", None),
    ("login: user=alice peer=192.0.2.7: mailbox in use", None),
    ("worker: pid=4242 started", None),
]


def failregexes(path):
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path)
    lines = cp.get("Definition", "failregex").strip().splitlines()
    return [l.strip() for l in lines if l.strip()]


def check_regexes(regexes):
    compiled = [re.compile(r.replace("<HOST>", HOST)) for r in regexes]
    failed = 0
    for line, want in SAMPLES:
        got = None
        for rx in compiled:
            m = rx.search(line)
            if m:
                got = m.group("host")
                break
        if got != want:
            print("FAIL: %r: expected %r, got %r" % (line, want, got))
            failed += 1
    print("%d samples, %d failed" % (len(SAMPLES), failed))
    return failed


def check_fail2ban(path):
    common = "/etc/fail2ban/filter.d/common.conf"
    tool = shutil.which("fail2ban-regex")
    if tool is None or not os.path.exists(common):
        print("fail2ban-regex not installed: full filter not run")
        return 0
    log = "".join("Nov 23 17:00:%02d mail postern[1234]: %s\n" % (i, line)
                  for i, (line, _) in enumerate(SAMPLES))
    want = sum(1 for _, host in SAMPLES if host is not None)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(common, tmp)
        shutil.copy(path, os.path.join(tmp, "postern.conf"))
        with open(os.path.join(tmp, "sample.log"), "w") as f:
            f.write(log)
        res = subprocess.run([tool, os.path.join(tmp, "sample.log"),
                              os.path.join(tmp, "postern.conf")],
                             capture_output=True, text=True)
    m = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched",
                  res.stdout, re.M)
    if res.returncode != 0 or m is None or int(m.group(1)) != want:
        print("FAIL: fail2ban-regex (want %d matches):\n%s%s"
              % (want, res.stdout, res.stderr))
        return 1
    print("fail2ban-regex: %s of %d lines matched" % (m.group(1),
                                                      len(SAMPLES)))
    return 0


def main():
    if len(sys.argv) != 2:
        print("usage: check-fail2ban.py FILTER", file=sys.stderr)
        return 2
    failed = check_regexes(failregexes(sys.argv[1]))
    failed += check_fail2ban(sys.argv[1])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
