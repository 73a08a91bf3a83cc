#!/usr/bin/env python3
"""Timeouts, connection limits, a flood of silent connections, failed
logins (delay, same reply, limit) and the plaintext-login policy."""

import socket
import statistics
import threading
import time

import postern_harness as h
from postern_harness import PosternTest, User


def msg(i):
    return ("From: x@example.org\nSubject: limits %d\n\nbody %d\n"
            % (i, i)).encode()


MSGS = [msg(i) for i in (1, 2, 3)]


def connect_greeted(srv, source=None, timeout=3.0):
    """Connects (retrying while the daemon still counts closed
    connections) until greeted; returns the client."""
    deadline = time.monotonic() + timeout * h.SLOW
    while True:
        c = h.Pop3(srv.port, source=source, greet=False)
        try:
            line = c.line()
        except (h.Closed, OSError):
            line = ""
        if line == h.GREETING:
            return c
        c.close()
        if time.monotonic() > deadline:
            raise AssertionError("no greeting within %.1fs, last: %r"
                                 % (timeout, line))
        time.sleep(0.1)


class TimeoutTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(
            [User("alice", "pw-a", MSGS), User("bob", "pw-b", MSGS)],
            server={"idle_timeout": 2, "login_timeout": 4})

    def test_idle_timeout_closes_without_update(self):
        c = self.logged_in(self.srv, "alice", "pw-a")
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        t0 = time.monotonic()
        lines = c.lines_until_eof(timeout=6 * h.SLOW)
        dt = time.monotonic() - t0
        self.assertEqual(lines, [h.ERR_IDLE])
        self.assertGreater(dt, 1.5, "closed before idle_timeout")
        self.assertLess(dt, 3.9 * h.SLOW,
                        "closed later than idle_timeout (login_timeout?)")
        time.sleep(0.2)
        self.assertTrue(all(m.exists()
                            for m in self.srv.users["alice"].msgs),
                        "idle timeout ran UPDATE")

    def test_activity_keeps_session(self):
        c = self.logged_in(self.srv, "bob", "pw-b")
        for _ in range(4):
            time.sleep(0.9)
            self.assertEqual(c.cmd("NOOP"), "+OK")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    def test_login_timeout(self):
        # A silent connection (held by the master) and one idle after
        # USER (in a worker) are both closed after login_timeout (4s),
        # not after idle_timeout (2s).
        silent = self.client(self.srv)
        after_user = self.client(self.srv)
        self.assertTrue(after_user.cmd("USER alice").startswith("+OK"))
        t0 = time.monotonic()
        results = {}

        def wait(name, c):
            try:
                lines = c.lines_until_eof(timeout=10 * h.SLOW)
                results[name] = (time.monotonic() - t0, lines)
            except socket.timeout:
                results[name] = (None, None)

        ts = [threading.Thread(target=wait, args=a)
              for a in (("silent", silent), ("after_user", after_user))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for name, (dt, lines) in results.items():
            self.assertIsNotNone(dt, "%s connection never closed" % name)
            self.assertGreater(dt, 3.3, "%s closed too early" % name)
            self.assertLess(dt, 4 + 3 * h.SLOW, name)
            for l in lines:
                self.assertFalse(l.startswith("+OK"), (name, lines))


class PerIpLimitTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(
            [User("u%d" % i, "pw", MSGS) for i in range(5)],
            server={"max_sessions_per_ip": 3, "max_sessions": 50})

    def check_refused(self, source=None):
        c = self.client(self.srv, greet=False, source=source)
        lines = c.lines_until_eof(timeout=5)
        self.assertEqual(lines, [h.ERR_TOO_MANY_CONN])

    def test_fourth_connection_refused(self):
        held = [connect_greeted(self.srv) for _ in range(3)]
        for c in held:
            self.addCleanup(c.close)
        self.check_refused()
        self.check_refused()
        # another address is not limited by 127.0.0.1's sessions
        other = connect_greeted(self.srv, source="127.0.0.2")
        self.addCleanup(other.close)
        # closing one frees a slot
        held[0].close()
        c = connect_greeted(self.srv)
        self.addCleanup(c.close)
        self.check_refused()
        for c in held + [c, other]:
            c.close()

    def test_logged_in_sessions_count(self):
        held = []
        for i in range(3):
            c = connect_greeted(self.srv)
            self.addCleanup(c.close)
            self.assertTrue(c.login("u%d" % i, "pw").startswith(
                "+OK mailbox ready"))
            held.append(c)
        self.check_refused()
        for c in held:
            self.assertEqual(c.cmd("NOOP"), "+OK")
            c.cmd("QUIT")
            c.close()


class TotalLimitTest(PosternTest):
    def test_max_sessions(self):
        srv = self.server([User("alice", "pw", MSGS)],
                          server={"max_sessions": 3,
                                  "max_sessions_per_ip": 10,
                                  "spare_workers": 1})
        held = [connect_greeted(srv, source="127.0.0.%d" % i)
                for i in (1, 2, 3)]
        for c in held:
            self.addCleanup(c.close)
        for src in ("127.0.0.4", "127.0.0.1"):
            c = self.client(srv, greet=False, source=src)
            self.assertEqual(c.lines_until_eof(timeout=5),
                             [h.ERR_TOO_MANY_CONN])
        held[1].close()
        c = connect_greeted(srv, source="127.0.0.5")
        self.addCleanup(c.close)
        self.assertTrue(c.login("alice", "pw").startswith("+OK mailbox"))


class FloodTest(PosternTest):
    def test_silent_connections_do_not_delay_login(self):
        srv = self.server([User("alice", "pw-alice", MSGS)],
                          server={"max_sessions": 400,
                                  "max_sessions_per_ip": 400,
                                  "login_timeout": 60})
        silent = []
        try:
            for i in range(300):
                silent.append(socket.create_connection(
                    ("127.0.0.1", srv.port), timeout=5))
            t0 = time.monotonic()
            c, r = srv.login("alice")
            self.addCleanup(c.close)
            st = c.cmd("STAT")
            dt = time.monotonic() - t0
            self.assertTrue(r.startswith("+OK mailbox ready"), r)
            self.assertTrue(st.startswith("+OK 3 "), st)
            self.assertLess(dt, 2.0, "login took %.2fs behind 300 silent "
                            "connections" % dt)
            # every silent one got its greeting and is still open
            for s in silent:
                s.settimeout(5)
                data = b""
                while not data.endswith(b"\r\n"):
                    d = s.recv(100)
                    if not d:
                        break
                    data += d
                self.assertEqual(data, (h.GREETING + "\r\n").encode())
            # held by the master, not by 300 workers
            n = len(srv.descendants())
            self.assertLess(n, 30, "%d processes for 300 silent "
                            "connections" % n)
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        finally:
            for s in silent:
                s.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class BacklogTest(PosternTest):
    def test_unread_replies_do_not_grow_memory(self):
        # A client that pipelines without reading: the worker must stop
        # reading commands once it cannot write, not queue them.
        big = b"From: a@example.org\nSubject: big\n\n" + b"y" * 99 \
            + b"\n" * 1000 + (b"z" * 100 + b"\n") * 1000
        srv = self.server([User("alice", "pw", [big])])
        start = srv.log_size()
        c = self.logged_in(srv, "alice", "pw")
        pid = srv.worker_pid_of_login("alice", start=start)
        self.assertTrue(c.cmd("STAT").startswith("+OK 1 "))
        rss0 = rss_kb(pid)
        c.sock.settimeout(1.0)
        payload = b"RETR 1\r\n" * 4096
        sent = 0
        deadline = time.monotonic() + 10 * h.SLOW
        while sent < 64 << 20 and time.monotonic() < deadline:
            try:
                sent += c.sock.send(payload)
            except socket.timeout:
                break
        grown = rss_kb(pid) - rss0
        self.assertLess(sent, 48 << 20, "the worker kept reading commands "
                        "it could not answer (%d MB sent)" % (sent >> 20))
        self.assertLess(grown, 32 * 1024, "worker RSS grew by %d kB" % grown)
        c.close()
        # the daemon still serves (the stuck session ends when the
        # client goes away)
        deadline = time.monotonic() + 5 * h.SLOW
        while True:
            c2, r = srv.login("alice", "pw")
            self.addCleanup(c2.close)
            if r.startswith("+OK mailbox") or time.monotonic() > deadline:
                break
            c2.close()
            time.sleep(0.1)
        self.assertTrue(r.startswith("+OK mailbox ready"), r)


class AuthFailureTest(PosternTest):
    DELAY = 0.5

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(
            [User("alice", "pw-alice", MSGS), User("bob", "pw-bob", MSGS)],
            server={"auth_failure_delay_ms": int(cls.DELAY * 1000),
                    "max_auth_failures": 3})

    def timed_pass(self, c, user, pw):
        ru = c.cmd("USER " + user)
        t0 = time.monotonic()
        r = c.cmd("PASS " + pw)
        return ru, r, time.monotonic() - t0

    def test_same_reply_and_time_for_unknown_user(self):
        wrong, unknown = [], []
        for i in range(3):
            c = self.client(self.srv)
            ru1, r1, t1 = self.timed_pass(c, "alice", "not-the-pw")
            ru2, r2, t2 = self.timed_pass(c, "nosuchuser", "not-the-pw")
            self.assertEqual(ru1, ru2, "USER reveals unknown users")
            self.assertEqual(r1, h.ERR_BAD_LOGIN)
            self.assertEqual(r2, h.ERR_BAD_LOGIN)
            wrong.append(t1)
            unknown.append(t2)
            c.close()
        for t in wrong + unknown:
            self.assertGreaterEqual(t, self.DELAY - 0.02,
                                    "failed login answered before "
                                    "auth_failure_delay_ms")
            self.assertLess(t, self.DELAY + 1.0 * h.SLOW)
        diff = abs(statistics.median(wrong) - statistics.median(unknown))
        self.assertLess(diff, 0.1 * h.SLOW,
                        "wrong password %s vs unknown user %s"
                        % (wrong, unknown))

    def test_good_login_not_delayed(self):
        c = self.client(self.srv)
        _, r, t = self.timed_pass(c, "bob", "pw-bob")
        self.assertTrue(r.startswith("+OK mailbox ready"), r)
        self.assertLess(t, self.DELAY - 0.05)
        c.cmd("QUIT")

    def test_max_auth_failures_closes(self):
        start = self.srv.log_size()
        c = self.client(self.srv)
        self.assertEqual(self.timed_pass(c, "alice", "x1")[1],
                         h.ERR_BAD_LOGIN)
        self.assertEqual(self.timed_pass(c, "alice", "x2")[1],
                         h.ERR_BAD_LOGIN)
        self.assertTrue(c.cmd("USER alice").startswith("+OK"))
        c.send("PASS x3\r\n")
        lines = c.lines_until_eof(timeout=5 * h.SLOW)
        self.assertEqual(lines[-1], h.ERR_TOO_MANY_FAILURES, lines)
        self.assertLessEqual(len(lines), 2, lines)
        if len(lines) == 2:
            self.assertEqual(lines[0], h.ERR_BAD_LOGIN)
        self.srv.wait_log(r"auth failed: user=alice peer=127\.0\.0\.1$",
                          start=start, count=3)
        # the correct password still works on a new connection
        c = self.logged_in(self.srv, "alice", "pw-alice")
        c.cmd("QUIT")


class PlaintextPolicyTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(
            [User("alice", "pw-alice", MSGS)],
            server={"plaintext_auth_networks": ["127.0.0.1/32"]})

    def test_refused_outside_networks(self):
        start = self.srv.log_size()
        c = self.client(self.srv, source="127.0.0.2")
        st, lines = c.multi("CAPA")
        self.assertEqual(st, "+OK capability list follows")
        self.assertNotIn("USER", lines)
        self.assertNotIn("SASL PLAIN", lines)
        self.assertIn("PIPELINING", lines)
        self.assertEqual(c.cmd("USER alice"), h.ERR_TLS_REQUIRED)
        self.assertEqual(c.cmd("PASS pw-alice"), h.ERR_TLS_REQUIRED)
        self.assertEqual(c.cmd("AUTH PLAIN AGFsaWNlAHB3LWFsaWNl"),
                         h.ERR_TLS_REQUIRED)
        self.assertEqual(c.cmd("STAT"), h.ERR_STATE)
        c.close()
        time.sleep(0.1)
        self.assertNotIn("login: user=alice", self.srv.log()[start:])

    def test_allowed_inside_networks(self):
        c = self.client(self.srv, source="127.0.0.1")
        st, lines = c.multi("CAPA")
        self.assertIn("USER", lines)
        self.assertTrue(c.login("alice", "pw-alice").startswith(
            "+OK mailbox ready"))
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")


if __name__ == "__main__":
    h.main()
