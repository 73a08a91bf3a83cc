#!/usr/bin/env python3
"""POP3 commands in every state, errors, limits of the line reader,
pipelining, and the log lines of a session."""

import os
import time
import unittest

import postern_harness as h
from postern_harness import PosternTest, User


def message(i):
    return (("From: sender%d@example.org\n"
             "To: user@example.org\n"
             "Subject: protocol test %d\n"
             "Message-ID: <proto%d@example.org>\n"
             "\n"
             "Body of message %d.\n"
             "Second line.\n") % (i, i, i, i) + "x" * (i * 10) + "\n"
            ).encode()


MESSAGES = [message(i) for i in (1, 2, 3)]
POOL = ["p%02d" % i for i in range(1, 41)]


class ProtocolTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        users = [User(n, "pw-" + n, MESSAGES) for n in POOL]
        users.append(User("bob", "correct horse battery", MESSAGES[:1],
                          scheme="plain"))
        users.append(User("carol", "carol-pw", MESSAGES[:2],
                          scheme="sha256"))
        try:
            h.hash_password("dave-pw", "yescrypt", salt="sdave")
            users.append(User("dave", "dave-pw", MESSAGES[:1],
                              scheme="yescrypt"))
        except Exception:
            pass
        cls.srv = cls.class_server(users, server={
            "max_protocol_errors": 100, "max_auth_failures": 10})
        cls.pool = list(POOL)

    def user(self):
        """A user no earlier test of this class used (no lock races)."""
        return self.pool.pop(0)

    def login(self, user=None):
        user = user or self.user()
        return user, self.logged_in(self.srv, user)

    # ---- AUTHORIZATION -------------------------------------------------
    def test_greeting(self):
        c = self.client(self.srv)
        self.assertEqual(c.greeting, h.GREETING)

    def test_capa_authorization(self):
        c = self.client(self.srv)
        st, lines = c.multi("CAPA")
        self.assertEqual(st, "+OK capability list follows")
        for cap in ("TOP", "USER", "RESP-CODES", "AUTH-RESP-CODE",
                    "PIPELINING", "UIDL", "IMPLEMENTATION postern"):
            self.assertIn(cap, lines)
        self.assertEqual(len(lines), len(set(lines)), "duplicate CAPA lines")
        # the session goes on
        self.assertEqual(c.cmd("QUIT"), "+OK bye")

    def test_capa_transaction(self):
        _, c = self.login()
        st, lines = c.multi("capa")
        self.assertEqual(st, "+OK capability list follows")
        for cap in ("TOP", "UIDL", "PIPELINING", "RESP-CODES"):
            self.assertIn(cap, lines)
        self.assertEqual(c.cmd("NOOP"), "+OK")

    def test_auth_plain(self):
        import base64

        def b64(s):
            return base64.b64encode(s.encode()).decode()
        c = self.client(self.srv)
        self.assertIn("SASL PLAIN", c.multi("CAPA")[1])
        self.assertEqual(c.multi("AUTH"), ("+OK SASL mechanisms follow",
                                           ["PLAIN"]))
        self.assertEqual(c.cmd("AUTH CRAM-MD5"),
                         "-ERR unsupported authentication mechanism")
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0bob\0wrong")),
                         "-ERR [AUTH] invalid user name or password")
        # someone else's authorization identity is never granted
        self.assertEqual(
            c.cmd("AUTH PLAIN " + b64("carol\0bob\0correct horse battery")),
            "-ERR [AUTH] invalid user name or password")
        self.assertEqual(c.cmd("AUTH PLAIN !!!!"),
                         "-ERR bad AUTH PLAIN response")
        # continuation form; "*" cancels
        self.assertEqual(c.cmd("AUTH PLAIN"), "+ ")
        self.assertEqual(c.cmd("*"), "-ERR authentication cancelled")
        self.assertEqual(c.cmd("AUTH PLAIN"), "+ ")
        r = c.cmd(b64("bob\0bob\0correct horse battery"))
        self.assertTrue(r.startswith("+OK mailbox ready, 1 messages"), r)
        self.assertEqual(c.cmd("STAT"), "+OK 1 %d" % len(h.to_wire(
            MESSAGES[0])))
        self.srv.wait_log(r"login: user=bob method=PLAIN tls=no")
        c.cmd("QUIT")

    def test_transaction_commands_refused_in_authorization(self):
        c = self.client(self.srv)
        for cmd in ("STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP",
                    "RSET", "TOP 1 1", "UIDL", "UIDL 1"):
            self.assertEqual(c.cmd(cmd), h.ERR_STATE, cmd)
        # after USER, still AUTHORIZATION
        u = self.user()
        self.assertTrue(c.cmd("USER " + u).startswith("+OK"))
        self.assertEqual(c.cmd("STAT"), h.ERR_STATE)

    def test_authorization_commands_refused_in_transaction(self):
        u, c = self.login()
        self.assertEqual(c.cmd("USER " + u), h.ERR_STATE)
        self.assertEqual(c.cmd("PASS pw-" + u), h.ERR_STATE)
        self.assertEqual(c.cmd("STAT"),
                         "+OK 3 %d" % sum(len(h.to_wire(m))
                                          for m in MESSAGES))

    def test_unknown_command(self):
        c = self.client(self.srv)
        self.assertEqual(c.cmd("FOO"), h.ERR_UNKNOWN)
        self.assertEqual(c.cmd("XYZZY 1 2"), h.ERR_UNKNOWN)
        self.assertEqual(c.cmd("STLSX"), h.ERR_UNKNOWN)
        _, c = self.login()
        self.assertEqual(c.cmd("FOO"), h.ERR_UNKNOWN)
        self.assertEqual(c.cmd("LAST"), h.ERR_UNKNOWN)  # cmd_last not loaded
        self.assertEqual(c.cmd("NOOP"), "+OK")

    def test_pass_before_user(self):
        c = self.client(self.srv)
        self.assertEqual(c.cmd("PASS whatever"), h.ERR_USER_FIRST)
        u = self.user()
        self.assertTrue(c.login(u, "pw-" + u).startswith("+OK mailbox"))

    def test_bad_arguments_authorization(self):
        c = self.client(self.srv)
        self.assertEqual(c.cmd("USER"), h.ERR_BADARGS)
        self.assertEqual(c.cmd("USER a b"), h.ERR_BADARGS)
        self.assertEqual(c.cmd("USER " + "a" * 41), h.ERR_BADARGS)
        self.assertEqual(c.cmd("QUIT now"), h.ERR_BADARGS)
        u = self.user()
        self.assertTrue(c.cmd("USER " + u).startswith("+OK"))
        self.assertEqual(c.cmd("PASS"), h.ERR_BADARGS)

    def test_bad_arguments_transaction(self):
        _, c = self.login()
        for cmd in ("STAT 1", "LIST 1 2", "RETR", "RETR 1 2", "DELE",
                    "DELE 1 2", "TOP", "TOP 1", "TOP 1 2 3", "UIDL 1 2",
                    "NOOP x", "RSET x", "LIST " + "1" * 41, "QUIT now"):
            self.assertEqual(c.cmd(cmd), h.ERR_BADARGS, cmd)
        # none of them changed anything
        self.assertEqual(c.cmd("STAT"), "+OK 3 %d"
                         % sum(len(h.to_wire(m)) for m in MESSAGES))

    def test_message_number_errors(self):
        _, c = self.login()
        for cmd in ("LIST 0", "LIST 4", "LIST 99999999999999999999",
                    "RETR 4", "RETR 0", "DELE 4", "TOP 4 0", "UIDL 4",
                    "UIDL 0"):
            self.assertEqual(c.cmd(cmd), h.ERR_NO_SUCH, cmd)
        for cmd in ("LIST abc", "LIST -1", "LIST 1x", "RETR 0x1",
                    "TOP 1 -1", "TOP 1 x"):
            self.assertTrue(c.cmd(cmd).startswith("-ERR"), cmd)
        self.assertEqual(c.cmd("NOOP"), "+OK")

    # ---- TRANSACTION ---------------------------------------------------
    def test_login_stat_list_retr(self):
        u = self.user()
        c = self.client(self.srv)
        self.assertTrue(c.cmd("USER " + u).startswith("+OK"))
        total = sum(len(h.to_wire(m)) for m in MESSAGES)
        self.assertEqual(c.cmd("PASS pw-" + u),
                         "+OK mailbox ready, 3 messages (%d octets)" % total)
        self.assertEqual(c.cmd("STAT"), "+OK 3 %d" % total)
        st, lines = c.multi("LIST")
        self.assertEqual(st, "+OK 3 messages (%d octets)" % total)
        self.assertEqual([l.split()[0] for l in lines], ["1", "2", "3"])
        sizes = {int(l.split()[0]): int(l.split()[1]) for l in lines}
        seen = []
        for n in (1, 2, 3):
            self.assertEqual(c.cmd("LIST %d" % n), "+OK %d %d"
                             % (n, sizes[n]))
            st, body = c.retr(n)
            self.assertEqual(st, "+OK %d octets" % sizes[n])
            self.assertEqual(len(body), sizes[n])
            seen.append(body)
        self.assertCountEqual(seen, [h.to_wire(m) for m in MESSAGES])
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed())

    def test_case_insensitive(self):
        u = self.user()
        c = self.client(self.srv)
        self.assertTrue(c.cmd("user " + u).startswith("+OK"))
        self.assertTrue(c.cmd("pAsS pw-" + u).startswith("+OK mailbox"))
        self.assertTrue(c.cmd("sTaT").startswith("+OK 3 "))
        self.assertTrue(c.cmd("list 1").startswith("+OK 1 "))
        self.assertTrue(c.cmd("retr 1").startswith("+OK"))
        c.multi_lines()
        self.assertTrue(c.cmd("top 1 0").startswith("+OK"))
        c.multi_lines()
        self.assertTrue(c.cmd("uidl 1").startswith("+OK 1 "))
        self.assertEqual(c.cmd("noop"), "+OK")
        self.assertEqual(c.cmd("dele 1"), "+OK message 1 deleted")
        self.assertTrue(c.cmd("rset").startswith("+OK 3 messages"))
        self.assertEqual(c.cmd("qUiT"), "+OK bye, 0 messages deleted")

    def test_user_name_case_matters_not_for_commands(self):
        # The password is case sensitive.
        u = self.user()
        c = self.client(self.srv)
        self.assertTrue(c.cmd("USER " + u).startswith("+OK"))
        self.assertEqual(c.cmd("PASS PW-" + u.upper()), h.ERR_BAD_LOGIN)

    def test_dele_rset_semantics(self):
        u, c = self.login()
        sizes = {}
        for n in (1, 2, 3):
            sizes[n] = int(c.cmd("LIST %d" % n).split()[2])
        total = sum(sizes.values())
        uid1 = c.cmd("UIDL 1").split()[2]
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        self.assertEqual(c.cmd("DELE 1"), h.ERR_DELETED)
        self.assertEqual(c.cmd("RETR 1"), h.ERR_DELETED)
        self.assertEqual(c.cmd("LIST 1"), h.ERR_DELETED)
        self.assertEqual(c.cmd("TOP 1 0"), h.ERR_DELETED)
        self.assertEqual(c.cmd("UIDL 1"), h.ERR_DELETED)
        self.assertEqual(c.cmd("STAT"), "+OK 2 %d" % (total - sizes[1]))
        st, lines = c.multi("LIST")
        self.assertEqual(st, "+OK 2 messages (%d octets)"
                         % (total - sizes[1]))
        self.assertEqual(lines, ["2 %d" % sizes[2], "3 %d" % sizes[3]])
        st, lines = c.multi("UIDL")
        self.assertEqual([l.split()[0] for l in lines], ["2", "3"])
        self.assertNotIn(uid1, [l.split()[1] for l in lines])
        # numbers stay: message 3 is still 3
        self.assertEqual(c.cmd("LIST 3"), "+OK 3 %d" % sizes[3])
        self.assertEqual(c.cmd("RSET"), "+OK 3 messages (%d octets)" % total)
        self.assertEqual(c.cmd("LIST 1"), "+OK 1 %d" % sizes[1])
        self.assertEqual(c.cmd("UIDL 1"), "+OK 1 " + uid1)
        st, body = c.retr(1)
        self.assertEqual(st, "+OK %d octets" % sizes[1])
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed())
        self.assertTrue(all(m.exists() for m in self.srv.users[u].msgs))

    def test_quit_authorization(self):
        c = self.client(self.srv)
        self.assertEqual(c.cmd("QUIT"), "+OK bye")
        self.assertTrue(c.is_closed(2))
        c2 = self.client(self.srv)
        self.assertTrue(c2.cmd("USER x").startswith("+OK"))
        self.assertEqual(c2.cmd("QUIT"), "+OK bye")
        self.assertTrue(c2.is_closed(2))

    def test_quit_deletes_and_counts(self):
        u, c = self.login()
        bodies = {}
        for n in (1, 2):
            bodies[n] = c.retr(n)[1]
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        self.assertEqual(c.cmd("DELE 2"), "+OK message 2 deleted")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 2 messages deleted")
        self.assertTrue(c.is_closed())
        left = [m for m in self.srv.users[u].msgs if m.exists()]
        self.assertEqual(len(left), 1)
        self.assertNotIn(left[0].wire, bodies.values())

    def test_relogin_right_after_quit(self):
        # QUIT answered means the mailbox lock is gone: an immediate new
        # session of the same user must not get [IN-USE].
        u, c = self.login()
        for i in range(3):
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
            c2, r = self.srv.login(u)
            self.addCleanup(c2.close)
            self.assertTrue(r.startswith("+OK mailbox ready"),
                            "round %d: %r" % (i, r))
            c = c2

    def test_noop(self):
        _, c = self.login()
        for _ in range(5):
            self.assertEqual(c.cmd("NOOP"), "+OK")

    # ---- the line reader -----------------------------------------------
    def test_line_too_long(self):
        c = self.client(self.srv)
        c.send("NOOP" + " " * 300 + "\r\n")
        self.assertEqual(c.line(), h.ERR_TOO_LONG)
        u = self.user()
        self.assertTrue(c.login(u, "pw-" + u).startswith("+OK mailbox"))
        c.send(b"X" * 300 + b"\r\n")
        self.assertEqual(c.line(), h.ERR_TOO_LONG)
        self.assertEqual(c.cmd("NOOP"), "+OK")
        # 10,000 bytes in one write with the next command behind it: one
        # error for the long line, then the NOOP is answered.
        c.send(b"RETR " + b"1" * 9993 + b"\r\nNOOP\r\n")
        self.assertEqual(c.line(), h.ERR_TOO_LONG)
        self.assertEqual(c.line(), "+OK")
        # and in pieces, slowly
        for i in range(10):
            c.send(b"Y" * 1000)
            time.sleep(0.01)
        c.send(b"\r\n")
        self.assertEqual(c.line(), h.ERR_TOO_LONG)
        self.assertTrue(c.cmd("STAT").startswith("+OK 3 "))

    def test_line_length_boundary(self):
        # RFC 2449: 255 octets including CRLF is allowed, more is not.
        u = self.user()
        c = self.client(self.srv)
        self.assertTrue(c.cmd("USER " + u).startswith("+OK"))
        line = "PASS " + "x" * 248
        self.assertEqual(len(line) + 2, 255)
        self.assertEqual(c.cmd(line), h.ERR_BAD_LOGIN)
        self.assertTrue(c.cmd("USER " + u).startswith("+OK"))
        self.assertEqual(c.cmd("PASS " + "x" * 251), h.ERR_TOO_LONG)
        self.assertEqual(c.cmd("PASS pw-" + u)[:16], "+OK mailbox read")

    def test_nul_byte(self):
        c = self.client(self.srv)
        c.send(b"NO\x00OP\r\n")
        self.assertEqual(c.line(), h.ERR_INVALID_CHARS)
        u = self.user()
        c.send(b"USER " + u.encode() + b"\x00x\r\n")
        self.assertEqual(c.line(), h.ERR_INVALID_CHARS)
        self.assertTrue(c.login(u, "pw-" + u).startswith("+OK mailbox"))
        c.send(b"STAT\x00\r\n")
        self.assertEqual(c.line(), h.ERR_INVALID_CHARS)
        self.assertEqual(c.cmd("NOOP"), "+OK")

    def test_pipelined_login_before_greeting(self):
        u = self.user()
        c = h.Pop3(self.srv.port, greet=False)
        self.addCleanup(c.close)
        c.send("USER %s\r\nPASS pw-%s\r\nSTAT\r\nQUIT\r\n" % (u, u))
        total = sum(len(h.to_wire(m)) for m in MESSAGES)
        self.assertEqual(c.line(), h.GREETING)
        self.assertTrue(c.line().startswith("+OK"))
        self.assertEqual(c.line(),
                         "+OK mailbox ready, 3 messages (%d octets)" % total)
        self.assertEqual(c.line(), "+OK 3 %d" % total)
        self.assertEqual(c.line(), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed())

    def test_pipelining_50_commands(self):
        _, c = self.login()
        cmds = []
        for i in range(50):
            n = i % 3 + 1
            cmds.append(["STAT", "LIST %d" % n, "NOOP", "UIDL %d" % n,
                         "RETR %d" % n, "TOP %d 1" % n, "LIST", "UIDL",
                         "LIST 7", "CAPA"][i % 10])
        multi = ("RETR", "TOP", "CAPA")

        def read_reply(cmd):
            st = c.line()
            if st.startswith("+OK") and (cmd.split()[0] in multi
                                         or cmd in ("LIST", "UIDL")):
                return (st, c.multi_raw())
            return (st, None)

        serial = []
        for cmd in cmds:
            c.send(cmd + "\r\n")
            serial.append(read_reply(cmd))
        c.send("".join(cmd + "\r\n" for cmd in cmds))
        piped = [read_reply(cmd) for cmd in cmds]
        self.assertEqual(len(piped), 50)
        for i, (a, b) in enumerate(zip(serial, piped)):
            self.assertEqual(a, b, "reply %d to %s" % (i, cmds[i]))
        self.assertEqual(piped[8][0], h.ERR_NO_SUCH)
        self.assertTrue(piped[0][0].startswith("+OK 3 "))
        self.assertEqual(c.cmd("NOOP"), "+OK")

    # ---- logins --------------------------------------------------------
    def test_password_with_spaces(self):
        c = self.logged_in(self.srv, "bob")
        self.assertTrue(c.cmd("STAT").startswith("+OK 1 "))

    def test_other_hash_schemes(self):
        c = self.logged_in(self.srv, "carol")  # $5$
        self.assertTrue(c.cmd("STAT").startswith("+OK 2 "))
        if "dave" not in self.srv.users:
            self.skipTest("no yescrypt in this libcrypt")
        c = self.logged_in(self.srv, "dave")   # $y$
        self.assertTrue(c.cmd("STAT").startswith("+OK 1 "))
        c3, r = self.srv.login("dave", "dave-PW")
        self.addCleanup(c3.close)
        self.assertEqual(r, h.ERR_BAD_LOGIN)

    def test_log_lines(self):
        start = self.srv.log_size()
        u, c = self.login()
        my_port = c.sock.getsockname()[1]
        size1 = int(c.cmd("LIST 1").split()[2])
        c.retr(1)
        self.assertEqual(c.cmd("DELE 2"), "+OK message 2 deleted")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 1 messages deleted")
        self.assertTrue(c.is_closed())
        m = self.srv.wait_log(r"^(?:<\d>)?connect: peer=127\.0\.0\.1 "
                              r"port=(\d+) listener=pop3$", start=start)
        self.assertIn(int(m.group(1)), (my_port, self.srv.port))
        self.srv.wait_log(r"login: user=%s method=USER tls=no "
                          r"peer=127\.0\.0\.1 pid=\d+$" % u, start=start)
        self.srv.wait_log(r"logout: user=%s peer=127\.0\.0\.1 pid=\d+ "
                          r"retrieved=1/%d deleted=1 left=2$" % (u, size1),
                          start=start)
        # a failed login, for fail2ban
        c2, r = self.srv.login("nosuchuser", "secret-nosuch-pw")
        self.addCleanup(c2.close)
        self.assertEqual(r, h.ERR_BAD_LOGIN)
        self.srv.wait_log(r"auth failed: user=nosuchuser peer=127\.0\.0\.1$",
                          start=start)
        log = self.srv.log()
        for secret in ["pw-" + u, "secret-nosuch-pw"]:
            self.assertNotIn(secret, log, "a password reached the log")


class LogInjectionTest(PosternTest):
    def test_control_characters_in_user_not_logged_raw(self):
        srv = self.server([User("alice", "pw", MESSAGES)],
                          server={"max_auth_failures": 10})
        c = self.client(srv)
        names = [b"a\tpeer=10.9.8.7", b"b\x1b[31mred", b"c\rpeer=10.1.2.3",
                 b"d\x7fe", b"e\x0bpeer=10.4.4.4"]
        for name in names:
            c.send(b"USER " + name + b"\r\n")
            r = c.line()
            if not r.startswith("+OK"):
                continue  # refusing such a name outright is fine too
            self.assertEqual(c.cmd("PASS x"), h.ERR_BAD_LOGIN)
        c.close()
        time.sleep(0.2)
        log = srv.log()
        for ch in "\t\x1b\r\x7f\x0b":
            self.assertNotIn(ch, log, "raw control character %r in the "
                             "log" % ch)
        for line in log.splitlines():
            if line.startswith("auth failed:"):
                # fail2ban takes the peer from this line: exactly one
                # peer= field, the real one, at the end
                self.assertEqual(line.count(" peer="), 1, line)
                self.assertTrue(line.endswith(" peer=127.0.0.1"), line)


@unittest.skipUnless(h.have_ipv6(), "no IPv6 loopback")
class IPv6Test(PosternTest):
    def test_ipv6_listener(self):
        p4, p6 = h.free_port(), h.free_port("::1")
        srv = self.server([User("alice", "pw", MESSAGES)], listen=[
            {"name": "pop3", "address": "127.0.0.1", "port": p4},
            {"name": "pop3v6", "address": "::1", "port": p6}])
        start = srv.log_size()
        c = self.client(srv, host="::1", port=p6)
        self.assertEqual(c.greeting, h.GREETING)
        self.assertTrue(c.login("alice", "pw").startswith("+OK mailbox"))
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        srv.wait_log(r"connect: peer=::1 port=\d+ listener=pop3v6$",
                     start=start)
        srv.wait_log(r"login: user=alice method=USER tls=no peer=::1 "
                     r"pid=\d+$", start=start)
        c = self.client(srv, port=p4)
        self.assertTrue(c.login("alice", "pw").startswith("+OK mailbox"))

    def test_ipv6_plaintext_policy(self):
        p6 = h.free_port("::1")
        srv = self.server([User("alice", "pw", MESSAGES)], listen=[
            {"name": "pop3v6", "address": "::1", "port": p6}],
            server={"plaintext_auth_networks": ["127.0.0.0/8"]})
        c = self.client(srv, host="::1", port=p6)
        st, caps = c.multi("CAPA")
        self.assertNotIn("USER", caps)
        self.assertEqual(c.cmd("USER alice"), h.ERR_TLS_REQUIRED)


class ProtocolErrorLimitTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(
            [User("u%d" % i, "pw", MESSAGES) for i in range(3)],
            server={"max_protocol_errors": 5})

    def check_closes_after_errors(self, c, cmds, errors):
        replies = []
        for cmd in cmds:
            try:
                replies.append(c.cmd(cmd, timeout=5))
            except h.Closed:
                break
        self.assertTrue(c.is_closed(3), "not closed after %r" % replies)
        self.assertEqual(replies[-1], h.ERR_TOO_MANY_ERRORS, replies)
        n = sum(1 for r in replies[:-1] if r in errors)
        self.assertEqual(n, len(replies) - 1, replies)
        self.assertIn(n, (4, 5), replies)

    def test_unknown_commands_close(self):
        c = self.client(self.srv)
        self.check_closes_after_errors(c, ["BOGUS%d" % i for i in range(10)],
                                       (h.ERR_UNKNOWN,))

    def test_mixed_errors_close_in_transaction(self):
        c = self.logged_in(self.srv, "u1", "pw")
        cmds = ["FOO", "STAT 1", "USER x", "BAR", "RETR", "BAZ", "QUX",
                "NOOP 1", "ZAP", "FOO"]
        self.check_closes_after_errors(
            c, cmds, (h.ERR_UNKNOWN, h.ERR_BADARGS, h.ERR_STATE))

    def test_errors_close_without_update(self):
        c = self.logged_in(self.srv, "u2", "pw")
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        for i in range(10):
            try:
                c.cmd("BOGUS", timeout=5)
            except h.Closed:
                break
        self.assertTrue(c.is_closed(3))
        time.sleep(0.2)
        self.assertTrue(all(m.exists() for m in self.srv.users["u2"].msgs),
                        "a protocol-error close ran UPDATE")


class LifecycleTest(PosternTest):
    def test_sigterm_stops_master_and_workers_without_update(self):
        srv = self.server([User("alice", "pw", MESSAGES)])
        c = self.logged_in(srv, "alice", "pw")
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        kids = srv.descendants()
        self.assertTrue(kids, "no worker processes")
        t0 = time.monotonic()
        rc = srv.stop(timeout=5 * h.SLOW)
        self.assertLess(time.monotonic() - t0, 5 * h.SLOW)
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        self.assertEqual(srv.stopped_leftovers, [],
                         "workers alive after the master stopped")
        self.assertTrue(c.is_closed(3), "session not closed by SIGTERM")
        self.assertTrue(all(m.exists() for m in srv.users["alice"].msgs),
                        "SIGTERM ran UPDATE")

    def test_journal_priority_prefix(self):
        # Under systemd (JOURNAL_STREAM names stderr) each line carries
        # its syslog priority: <6> for info.
        srv = self.server([User("alice", "pw", MESSAGES)], start=False)
        open(srv.log_path, "wb").close()
        st = os.stat(srv.log_path)
        srv.env_set["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        srv.start()
        c = self.logged_in(srv, "alice", "pw")
        c.cmd("QUIT")
        c2, r = srv.login("alice", "wrong")
        self.addCleanup(c2.close)
        srv.wait_log(r"^<6>login: user=alice method=USER tls=no "
                     r"peer=127\.0\.0\.1 pid=\d+$")
        srv.wait_log(r"^<\d>auth failed: user=alice peer=127\.0\.0\.1$")
        for line in srv.log().splitlines():
            self.assertRegex(line, r"^<[0-7]>", "line without priority")

    def test_sigint_stops(self):
        import signal
        srv = self.server([User("alice", "pw", MESSAGES)])
        srv.signal(signal.SIGINT)
        try:
            rc = srv.proc.wait(5 * h.SLOW)
        except Exception:
            rc = None
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    h.main()
