#!/usr/bin/env python3
"""Checks the man pages: groff renders each without a warning, and the
example module printed in postern-modules(7) is exactly
docs/examples/xdeleted.c (which the build compiles).

Usage: check-man.py DOCS_DIR. Exit 0 ok, 1 failure, 77 skipped (no groff).
"""
import os
import re
import shutil
import subprocess
import sys

PAGES = ["postern.8", "postern.conf.5", "postern-modules.7"]


def groff_warnings(path):
    env = dict(os.environ, LC_ALL="C.UTF-8")
    res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path],
                         capture_output=True, text=True, env=env)
    out = res.stderr.strip()
    if res.returncode != 0 and not out:
        out = "groff exited with status %d" % res.returncode
    return out


def unroff(line):
    line = line.replace("\\-", "-").replace("\\e", "\\")
    if line.startswith("\\&"):
        line = line[2:]
    return line


def example_block(text):
    m = re.search(r"^\.SH EXAMPLE\n.*?^\.nf\n(.*?)^\.fi\n", text,
                  re.S | re.M)
    if m is None:
        return None
    return "".join(unroff(l) + "\n" for l in m.group(1).splitlines())


def main():
    if len(sys.argv) != 2:
        print("usage: check-man.py DOCS_DIR", file=sys.stderr)
        return 2
    docs = sys.argv[1]
    if shutil.which("groff") is None:
        print("groff not installed: skipped")
        return 77
    failed = 0
    for page in PAGES:
        warn = groff_warnings(os.path.join(docs, page))
        if warn:
            print("%s: groff warnings:\n%s" % (page, warn))
            failed += 1
        else:
            print("%s: ok" % page)
    with open(os.path.join(docs, "postern-modules.7")) as f:
        shown = example_block(f.read())
    with open(os.path.join(docs, "examples", "xdeleted.c")) as f:
        source = f.read()
    if shown != source:
        print("postern-modules.7: EXAMPLE differs from examples/xdeleted.c")
        failed += 1
    else:
        print("postern-modules.7: EXAMPLE matches examples/xdeleted.c")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
