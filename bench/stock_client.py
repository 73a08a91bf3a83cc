#!/usr/bin/env python3
"""A stock POP3 client for scripts/bench: Python's poplib on a plain
blocking socket (no TCP_QUICKACK, no TCP_NODELAY), one session after the
other: USER, PASS, LIST, UIDL, RETR of every message, QUIT.

    stock_client.py PORT USER PASSWORD DURATION WARMUP

Counts the bytes of the messages retrieved inside the window (RETR
octets as poplib reports them) and prints one JSON object.
"""

import json
import poplib
import sys
import time


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    duration, warmup = float(sys.argv[4]), float(sys.argv[5])
    t_begin = time.monotonic()
    t0, t_end = t_begin + warmup, t_begin + warmup + duration
    hard = t_end + 60
    nbytes = sessions = 0
    while True:
        now = time.monotonic()
        if now >= t_end or now >= hard:
            break
        pop = poplib.POP3("127.0.0.1", port, timeout=30)
        pop.user(user)
        pop.pass_(password)
        _, listing, _ = pop.list()
        pop.uidl()
        for entry in listing:
            num = int(entry.split()[0])
            _, _, octets = pop.retr(num)
            now = time.monotonic()
            if t0 <= now < t_end:
                nbytes += octets
            if now >= hard:
                break
        pop.quit()
        sessions += 1
    print(json.dumps({"bytes": nbytes, "window_s": duration,
                      "sessions_total": sessions}))


if __name__ == "__main__":
    main()
