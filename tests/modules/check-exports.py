#!/usr/bin/env python3
"""Each module exports exactly one symbol, postern_module, and the daemon
needs nothing from a module but that (STYLE.md: one exported symbol)."""
import subprocess
import sys

bad = 0
for path in sys.argv[1:]:
    out = subprocess.run(["nm", "-D", "--defined-only", path], check=True,
                         capture_output=True, text=True).stdout
    syms = sorted(l.split()[-1] for l in out.splitlines() if l.strip())
    if syms != ["postern_module"]:
        print(f"{path}: exports {syms}, want ['postern_module']")
        bad += 1
    else:
        print(f"{path}: ok")
sys.exit(1 if bad else 0)
