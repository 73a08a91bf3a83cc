#!/usr/bin/env python3
"""The system calls a session makes, counted with strace attached to the
workers: commands are read by read() waiting on the socket's receive
timeout (no poll per command), and RETR costs a few calls per message
(no fcntl, no reopening of directories)."""

import collections
import re
import shutil
import signal
import subprocess
import time
import unittest

import postern_harness as h
from postern_harness import PosternTest, User

N_MSGS = 40
N_NOOPS = 30


def msg(i):
    return ("From: x@example.org\nSubject: hot %d\n\n%s\n"
            % (i, "line of the body\n" * (i % 7 + 1))).encode()


def traced(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1]) != 0
    return False


@unittest.skipUnless(shutil.which("strace"), "strace not installed")
class HotPathTest(PosternTest):
    def trace_workers(self, srv):
        """Starts strace on every worker; returns (process, output
        path)."""
        pids = srv.descendants()
        self.assertTrue(pids, "no workers to trace")
        out = srv.path("strace.out")
        cmd = ["strace", "-f", "-qq", "-o", out]
        for p in pids:
            cmd += ["-p", str(p)]
        st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        self.addCleanup(self._end_strace, st)
        deadline = time.monotonic() + 10 * h.SLOW
        while not all(traced(p) for p in pids):
            self.assertIsNone(st.poll(), "strace could not attach")
            self.assertLess(time.monotonic(), deadline, "strace too slow")
            time.sleep(0.05)
        return st, out

    @staticmethod
    def _end_strace(st):
        if st.poll() is None:
            st.send_signal(signal.SIGINT)
            try:
                st.wait(10)
            except subprocess.TimeoutExpired:
                st.kill()
                st.wait()

    def counts(self, st, out):
        self._end_strace(st)
        calls = collections.Counter()
        with open(out) as f:
            for line in f:
                m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]", line)
                if m and "resumed>" not in line:
                    calls[m.group(1)] += 1
        return calls

    def test_session_calls(self):
        srv = self.server([User("alice", "pw-alice",
                                [msg(i) for i in range(N_MSGS)])],
                          server={"spare_workers": 1, "max_sessions": 4})
        # one session first, so the traced worker is warm like a reused one
        c = self.logged_in(srv, "alice", "pw-alice")
        c.cmd("QUIT")
        c.close()
        time.sleep(0.2)
        st, out = self.trace_workers(srv)
        c = self.logged_in(srv, "alice", "pw-alice")
        for _ in range(N_NOOPS):
            self.assertEqual(c.cmd("NOOP"), "+OK")
        for i in range(1, N_MSGS + 1):
            status, data = c.retr(i)
            self.assertTrue(status.startswith("+OK"), status)
        self.assertTrue(c.cmd("QUIT").startswith("+OK bye"))
        c.read_until_eof()
        c.close()
        time.sleep(0.2)
        calls = self.counts(st, out)
        # A second of silence (a loaded machine) gives pages back: those
        # calls are not the commands' and are left out of the total.
        total = sum(n for name, n in calls.items()
                    if name not in ("madvise", "setsockopt"))
        detail = ", ".join("%s=%d" % kv for kv in calls.most_common())
        self.assertGreater(calls["read"], N_NOOPS + N_MSGS, detail)
        for name in ("poll", "ppoll", "select", "pselect6", "epoll_wait"):
            self.assertEqual(calls[name], 0, "%s in a session: %s"
                             % (name, detail))
        # the session lock only: none per message
        self.assertLessEqual(calls["fcntl"], 2, detail)
        # A NOOP is a read and a write. A RETR is those plus the message
        # file's openat, fstat, pread and close. Login, opening the
        # mailbox and the end of the session take about 35 more.
        self.assertLessEqual(total, 50 + 2 * N_NOOPS + 6 * N_MSGS,
                             "%d calls: %s" % (total, detail))
        self.assertLessEqual(calls["openat"], N_MSGS + 8, detail)
        self.assertLessEqual(calls["pread64"] + calls["read"],
                             2 * N_MSGS + N_NOOPS + 10, detail)


if __name__ == "__main__":
    h.main()
