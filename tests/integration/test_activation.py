#!/usr/bin/env python3
"""systemd socket activation (listen fds matched by name) and inetd mode,
both through systemd-socket-activate, with a full login + RETR + DELE."""

import os
import shutil
import signal
import socket
import time

import postern_harness as h
from postern_harness import PosternTest, User

SSA = shutil.which("systemd-socket-activate")

MSGS = [b"From: a@example.org\nSubject: act 1\n\n.dot line\nbody one\n",
        b"From: a@example.org\nSubject: act 2\n\nbody two\n"]


def refused(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


class ActivationTest(PosternTest):
    def setUp(self):
        if SSA is None:
            self.fail("systemd-socket-activate not installed "
                      "(scripts/deps installs it)")

    def make(self):
        """A server whose config's pop3 listen entry is on a port that
        must not be bound; returns (srv, activation port)."""
        conf_port = h.free_port()
        srv = h.Server([User("alice", "pw-alice", MSGS)],
                       listen=[{"name": "pop3", "address": "127.0.0.1",
                                "port": conf_port}])
        self.addCleanup(self._stop_server, srv)
        srv.conf_port = conf_port
        srv.port = h.free_port()
        return srv, srv.port

    def wait_listen(self, srv, port):
        deadline = time.monotonic() + h.TIMEOUT
        while not h.listening(port):
            if srv.proc.poll() is not None:
                self.fail("systemd-socket-activate exited: %s"
                          % srv.log_tail())
            if time.monotonic() > deadline:
                self.fail("nothing listens on %d" % port)
            time.sleep(0.02)

    def session(self, srv, dele=False):
        c = self.client(srv, timeout=10 * h.SLOW)
        self.assertEqual(c.greeting, h.GREETING)
        st, caps = c.multi("CAPA")
        self.assertIn("USER", caps)
        total = sum(len(h.to_wire(m)) for m in MSGS)
        self.assertEqual(c.login("alice", "pw-alice"),
                         "+OK mailbox ready, 2 messages (%d octets)" % total)
        got = sorted(c.retr(n)[1] for n in (1, 2))
        self.assertEqual(got, sorted(h.to_wire(m) for m in MSGS))
        if dele:
            self.assertEqual(c.cmd("DELE 2"), "+OK message 2 deleted")
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 1 messages deleted")
        else:
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed(5))

    def test_sd_notify(self):
        """READY=1 once serving, RELOADING=1/READY=1 around a reload,
        STOPPING=1 on SIGTERM (Type=notify in postern.service)."""
        srv = h.Server([User("alice", "pw-alice", MSGS)])
        self.addCleanup(self._stop_server, srv)
        path = srv.path("notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        os.chmod(path, 0o777)  # the daemon may have dropped to nobody
        self.addCleanup(s.close)
        s.settimeout(10 * h.SLOW)
        srv.env_set = dict(srv.env_set, NOTIFY_SOCKET=path)
        srv.start()

        def expect(word):
            while True:
                msg = s.recv(4096).decode()
                if word in msg.split("\n"):
                    return
        expect("READY=1")
        self.session(srv)
        srv.signal(signal.SIGHUP)
        expect("RELOADING=1")
        expect("READY=1")
        srv.signal(signal.SIGTERM)
        expect("STOPPING=1")

    def test_listen_fd_by_name(self):
        srv, port = self.make()
        srv.start(argv=[SSA, "-l", "127.0.0.1:%d" % port, "--fdname=pop3",
                        h.BIN, "-c", srv.conf_path], wait=False)
        self.wait_listen(srv, port)
        self.session(srv)
        srv.wait_log(r"connect: peer=127\.0\.0\.1 port=\d+ listener=pop3")
        # the config's own address was not bound
        self.assertFalse(h.listening(srv.conf_port),
                         "the listen entry's own port was bound too")
        self.assertTrue(refused(srv.conf_port))
        # several sessions on the inherited socket
        self.session(srv)
        self.session(srv)
        self.assertTrue(srv.alive())

    def test_single_unnamed_fd(self):
        srv, port = self.make()
        srv.start(argv=[SSA, "-l", "127.0.0.1:%d" % port,
                        h.BIN, "-c", srv.conf_path], wait=False)
        self.wait_listen(srv, port)
        self.session(srv)
        self.assertFalse(h.listening(srv.conf_port))

    def test_inetd(self):
        srv, port = self.make()
        srv.start(argv=[SSA, "--inetd", "-a", "-l", "127.0.0.1:%d" % port,
                        h.BIN, "--inetd", "-c", srv.conf_path], wait=False)
        self.wait_listen(srv, port)
        self.session(srv)
        srv.wait_log(r"login: user=alice method=USER tls=no "
                     r"peer=127\.0\.0\.1 pid=\d+")
        srv.wait_log(r"logout: user=alice peer=127\.0\.0\.1 pid=\d+ "
                     r"retrieved=2/\d+ deleted=0 left=2")
        self.assertFalse(h.listening(srv.conf_port))
        # UPDATE works in inetd mode, and the lock holds across the
        # per-connection processes
        a = self.client(srv)
        self.assertTrue(a.login("alice", "pw-alice").startswith("+OK mail"))
        b = self.client(srv)
        self.assertEqual(b.login("alice", "pw-alice"), h.ERR_IN_USE)
        self.assertEqual(a.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(a.is_closed(5))
        self.session(srv, dele=True)
        left = [m for m in srv.users["alice"].msgs if m.exists()]
        self.assertEqual(len(left), 1)

    def test_inetd_limits_apply(self):
        # protocol limits still hold with no master in front
        srv, port = self.make()
        srv.start(argv=[SSA, "--inetd", "-a", "-l", "127.0.0.1:%d" % port,
                        h.BIN, "--inetd", "-c", srv.conf_path], wait=False)
        self.wait_listen(srv, port)
        c = self.client(srv, timeout=10 * h.SLOW)
        c.send(b"X" * 5000 + b"\r\n")
        self.assertEqual(c.line(), h.ERR_TOO_LONG)
        self.assertEqual(c.cmd("PASS x"), h.ERR_USER_FIRST)
        self.assertEqual(c.cmd("QUIT"), "+OK bye")


if __name__ == "__main__":
    h.main()
