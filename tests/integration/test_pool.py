#!/usr/bin/env python3
"""The master and its worker pool: a finished session does not wake the
master (the worker counts it on the shared board), a connection waiting
for a worker gets the first one that finishes, and workers of an older
configuration leave after their session."""

import os
import pwd
import shutil
import signal
import time
import unittest

import postern_harness as h
from postern_harness import PosternTest, User


def voluntary_switches(pid):
    return h.proc_field(pid, "status", "voluntary_ctxt_switches")


class PoolTest(PosternTest):
    def session(self, srv, user, password, pause=0.0):
        """One whole session; pause after the greeting and after the end
        lets the master fall asleep between the steps it may wake for."""
        c = h.Pop3(srv.port)
        try:
            time.sleep(pause)
            self.assertTrue(c.login(user, password).startswith(
                "+OK mailbox ready"))
            self.assertTrue(c.cmd("STAT").startswith("+OK 1 "))
            self.assertTrue(c.cmd("QUIT").startswith("+OK bye"))
            self.assertEqual(c.read_until_eof(), b"")
        finally:
            c.close()
        time.sleep(pause)

    def test_finished_sessions_do_not_wake_master(self):
        # The master wakes for a connection and for its first bytes
        # (apart, with the pauses); the end of the session is on the
        # board, read when needed, so not three times per session.
        srv = self.server([User("alice", "pw-alice", [b"Subject: a\n\na\n"])])
        for _ in range(3):
            self.session(srv, "alice", "pw-alice")
        n = 30
        before = voluntary_switches(srv.pid)
        for _ in range(n):
            self.session(srv, "alice", "pw-alice", pause=0.01)
        woken = voluntary_switches(srv.pid) - before
        print("master slept %d times for %d sessions" % (woken, n))
        self.assertLessEqual(woken, 2 * n + 5,
                             "the master slept %d times for %d sessions"
                             % (woken, n))
        self.assertGreaterEqual(woken, n, "the test measured nothing")

    @unittest.skipUnless(h.IS_ROOT and shutil.which("prlimit"),
                         "needs root and prlimit")
    def test_waiting_connection_gets_first_free_worker(self):
        # The daemon runs as "games" (no other process has that uid) with
        # RLIMIT_NPROC 3: the master and two workers, no third. With both
        # workers busy, a third client waits; when a session ends, its
        # worker must tell the master (notify), which sleeps otherwise
        # until the login timeout.
        try:
            games = pwd.getpwnam("games")
        except KeyError:
            self.skipTest("no user games")
        busy = [p for p in os.listdir("/proc") if p.isdigit()
                and os.stat("/proc/" + p).st_uid == games.pw_uid]
        if busy:
            self.skipTest("processes run as games already")
        users = [User(n, "pw-" + n, [b"Subject: a\n\na\n"])
                 for n in ("alice", "bob", "carol")]
        srv = self.server(users, start=False,
                          server={"user": "games", "spare_workers": 1,
                                  "max_sessions": 10, "login_timeout": 60})
        h.chown_tree(srv.tmp, games.pw_uid, games.pw_gid)
        srv.start(argv=["prlimit", "--nproc=3", "--", h.BIN, "-c",
                        srv.conf_path])
        a = self.logged_in(srv, "alice", "pw-alice")
        b = self.logged_in(srv, "bob", "pw-bob")
        srv.wait_log(r"worker: fork: ")
        c = self.client(srv)
        c.send(b"USER carol\r\n")
        with self.assertRaises(TimeoutError,
                               msg="carol was served with no worker"):
            c.line(timeout=0.5)
        self.assertTrue(a.cmd("QUIT").startswith("+OK bye"))
        t0 = time.monotonic()
        self.assertEqual(c.line(timeout=10 * h.SLOW), "+OK send PASS")
        self.assertLess(time.monotonic() - t0, 5 * h.SLOW)
        self.assertTrue(c.cmd("PASS pw-carol").startswith("+OK mailbox"))
        self.assertEqual(b.cmd("NOOP"), "+OK")

    def test_busy_worker_leaves_after_reload(self):
        srv = self.server([User("alice", "pw-alice", [b"Subject: a\n\na\n"]),
                           User("bob", "pw-bob", [b"Subject: b\n\nb\n"])],
                          server={"max_sessions_per_ip": 2})
        start = srv.log_size()
        old = self.logged_in(srv, "alice", "pw-alice")
        pid = srv.worker_pid_of_login("alice", start=start)
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"reload: done", start=start)
        self.assertEqual(old.cmd("NOOP"), "+OK")
        self.assertTrue(h._alive_child_of_us(pid))
        self.assertTrue(old.cmd("QUIT").startswith("+OK bye"))
        old.close()
        deadline = time.monotonic() + 5 * h.SLOW
        while h._alive_child_of_us(pid):
            self.assertLess(time.monotonic(), deadline,
                            "the worker of the old configuration stayed")
            time.sleep(0.05)
        # Its session no longer counts against 127.0.0.1: two more fit.
        held = []
        for user, pw in (("alice", "pw-alice"), ("bob", "pw-bob")):
            c, r = srv.login(user, pw)
            self.addCleanup(c.close)
            held.append(c)
            self.assertTrue(r.startswith("+OK mailbox ready"), r)
        self.assertNotIn(pid, srv.descendants())


if __name__ == "__main__":
    h.main()
