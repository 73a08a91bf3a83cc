#!/usr/bin/env python3
"""Root daemon without `user`: each session switches to the grant's
uid/gid (from the passwd-file) and its worker exits afterwards; uid 0 and
grants without a uid are refused. Runs only as root."""

import os
import re
import socket
import threading
import time
import unittest

import postern_harness as h
from postern_harness import PosternTest, User

NOBODY = h.NOBODY_UID
NOGROUP = h.NOBODY_GID
MSGS = [b"From: a@example.org\nSubject: root mode %d\n\nbody %d\n" % (i, i)
        for i in (1, 2)]


def proc_ids(pid):
    """(uids, gids, groups) of a live process from /proc/PID/status."""
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = [int(x) for x in v.split()]
    return ids["Uid"], ids["Gid"], ids["Groups"]


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except OSError:
        return True


@unittest.skipUnless(h.IS_ROOT, "root mode needs the tests to run as root")
class RootStartupTest(PosternTest):
    def test_uid0_entry_refused(self):
        # A uid-0 entry is refused: either the daemon will not start
        # (a FILE:LINE error naming the passwd-file line), or it starts
        # and refuses that login.
        srv = h.Server([User("alice", "pw-alice", MSGS, uid=NOBODY,
                             gid=NOGROUP),
                        User("rootuser", "pw-rootuser", MSGS, uid=0,
                             gid=0)], drop_user=False)
        self.addCleanup(self._stop_server, srv)
        try:
            srv.start()
        except AssertionError:
            self.assertEqual(srv.proc.returncode, 1)
            self.assertRegex(srv.log(), re.escape(srv.passwd_path)
                             + r":4: .*uid 0")
            return
        c, r = srv.login("rootuser", "pw-rootuser")
        self.addCleanup(c.close)
        self.assertTrue(r.startswith("-ERR"), r)


def storm(port, users, seconds):
    """Clients that log in, STAT and QUIT as fast as the server lets them,
    one thread per user, for seconds. Returns (sessions, [problems])."""
    done, problems = [0], []
    stop = time.monotonic() + seconds

    def one(user):
        while time.monotonic() < stop and len(problems) < 5:
            try:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=10 * h.SLOW) as s:
                    f = s.makefile("rwb")
                    replies = [f.readline()]
                    for cmd in (b"USER " + user.encode(), b"PASS pw-"
                                + user.encode(), b"STAT", b"QUIT"):
                        f.write(cmd + b"\r\n")
                        f.flush()
                        replies.append(f.readline())
                bad = [r for r in replies if not r.startswith(b"+OK")]
                if bad:
                    problems.append("%s: %r" % (user, bad[0]))
                done[0] += 1
            except OSError as e:
                problems.append("%s: %s" % (user, e))

    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0], problems


@unittest.skipUnless(h.IS_ROOT, "root mode needs the tests to run as root")
class RootStormTest(PosternTest):
    def test_storm_then_stop(self):
        # Every session forks a worker and every worker exits: the
        # master's bookkeeping of exiting workers must survive a storm
        # (a channel closed while a just-forked worker still held it once
        # left a stale registration that hung the master), and it must
        # still stop at once afterwards.
        names = ["s%02d" % i for i in range(12)]
        srv = self.server([User(n, "pw-" + n, MSGS, scheme="plain",
                                uid=NOBODY, gid=NOGROUP) for n in names],
                          drop_user=False,
                          server={"max_sessions_per_ip": 100})
        sessions, problems = storm(srv.port, names, 3 * h.SLOW)
        self.assertEqual(problems, [])
        self.assertGreater(sessions, 50)
        t0 = time.monotonic()
        rc = srv.stop(timeout=10 * h.SLOW)
        self.assertLess(time.monotonic() - t0, 5 * h.SLOW,
                        "the master took too long to stop")
        self.assertEqual(rc, 0)


@unittest.skipUnless(h.IS_ROOT, "root mode needs the tests to run as root")
class RootModeTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        users = [
            User("alice", "pw-alice", MSGS, uid=NOBODY, gid=NOGROUP),
            User("bob", "pw-bob", MSGS, uid=NOBODY, gid=NOGROUP),
            User("carl", "pw-carl", MSGS, uid=NOBODY, gid=NOGROUP),
            User("rootgid", "pw-rootgid", MSGS, uid=NOBODY, gid=0),
            User("nouid", "pw-nouid", MSGS),
            User("victim", "pw-victim", MSGS, uid=NOBODY, gid=NOGROUP),
        ]
        cls.srv = cls.class_server(users, drop_user=False, start=False)
        # victim's mailbox belongs to root and is closed to others: only
        # a session that kept root could open it
        v = cls.srv.users["victim"]
        h.chown_tree(v.home, 0, 0)
        os.chmod(v.home, 0o700)
        os.chmod(v.maildir, 0o700)
        cls.srv.start()

    def test_config_has_no_daemon_user(self):
        with open(self.srv.conf_path) as f:
            self.assertNotRegex(f.read(), r"(?m)^\s*user\s*=")
        uids, gids, _ = proc_ids(self.srv.pid)
        self.assertEqual(uids[0], 0, "the master must stay root")

    def test_session_runs_as_grant_and_worker_exits(self):
        pids = []
        for user in ("alice", "bob", "alice"):
            start = self.srv.log_size()
            c = self.logged_in(self.srv, user, "pw-" + user)
            pid = self.srv.worker_pid_of_login(user, start=start)
            uids, gids, groups = proc_ids(pid)
            self.assertEqual(uids, [NOBODY] * 4, "session uids")
            self.assertEqual(gids, [NOGROUP] * 4, "session gids")
            self.assertNotIn(0, groups, "root's groups kept")
            self.assertTrue(c.cmd("STAT").startswith("+OK 2 "))
            body = c.retr(1)[1]
            self.assertIn(body, [h.to_wire(m) for m in MSGS])
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
            self.assertTrue(c.is_closed())
            deadline = time.monotonic() + 3 * h.SLOW
            while not gone(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertTrue(gone(pid), "worker %d (dropped to uid %d) "
                            "still alive after its session" % (pid, NOBODY))
            pids.append(pid)
        self.assertEqual(len(set(pids)), 3, "a worker was reused: %s" % pids)

    def test_dele_as_grant(self):
        # UPDATE works after the drop to the grant's uid
        start = self.srv.log_size()
        c = self.logged_in(self.srv, "carl", "pw-carl")
        self.assertEqual(c.cmd("DELE 2"), "+OK message 2 deleted")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 1 messages deleted")
        self.assertTrue(c.is_closed())
        self.srv.wait_log(r"logout: user=carl ", start=start)
        self.assertEqual(sum(m.exists() for m in self.srv.users["carl"].msgs),
                         1)

    def refused(self, user):
        start = self.srv.log_size()
        c, r = self.srv.login(user, "pw-" + user)
        self.addCleanup(c.close)
        self.assertTrue(r.startswith("-ERR"), "%s: PASS got %r" % (user, r))
        try:
            st = c.cmd("STAT", timeout=3)
        except (h.Closed, OSError):
            st = "(closed)"
        self.assertFalse(st.startswith("+OK"), "%s: STAT got %r"
                         % (user, st))
        time.sleep(0.2)
        log = self.srv.log()[start:]
        self.assertNotRegex(log, r"logout: user=%s .*retrieved" % user)
        return r

    def test_uid0_added_at_runtime_refused(self):
        # passwd-file rewritten while running (auth_passwd re-reads it)
        srv = self.srv
        root = User("rootuser", "pw-rootuser", MSGS, uid=0, gid=0)
        srv.add_user(root)
        try:
            time.sleep(1.1)  # a new mtime second for the re-stat
            srv.write_passwd()
            self.refused("rootuser")
            # the other users are not locked out by the bad line
            c = self.logged_in(srv, "alice", "pw-alice")
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        finally:
            del srv.users["rootuser"]
            srv.write_passwd()

    def test_gid0_refused(self):
        # gid 0 gives group root: refused like uid 0
        self.refused("rootgid")

    def test_no_uid_refused(self):
        self.refused("nouid")

    def test_root_owned_mailbox_not_readable(self):
        r = self.refused("victim")
        self.assertEqual(r, h.ERR_SYS_TEMP)
        v = self.srv.users["victim"]
        self.assertTrue(all(m.exists() for m in v.msgs))


if __name__ == "__main__":
    h.main()
