#!/usr/bin/env python3
"""UIDL stability, DELE/UPDATE semantics, and that nothing is deleted
without QUIT (dropped connection, kill -9 of the worker, SIGTERM)."""

import os
import re
import signal
import socket
import time

import postern_harness as h
from postern_harness import PosternTest, User

UID_RE = re.compile(r"^[\x21-\x7e]{1,70}$")


def msg(i, tag="m"):
    return ("From: x@example.org\nSubject: %s%d\n\nbody %s%d\n"
            % (tag, i, tag, i)).encode()


FIVE = [msg(i) for i in range(1, 6)]


class UidlDeleTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        same = b"From: x@example.org\nSubject: same\n\nsame\n"
        users = [User(n, "pw-" + n, FIVE) for n in
                 ("stable", "others", "dele", "drop", "kill", "rset",
                  "inuse", "newmail", "update-fail", "kill-idle",
                  "halfclose", "halfdrop")]
        users.append(User("twins", "pw-twins",
                          [(same, {"w": True}), (same, {"w": False}),
                           (same, {"w": True})]))
        cls.srv = cls.class_server(users)

    def login(self, user):
        return self.logged_in(self.srv, user, "pw-" + user)

    def login_retry(self, user, timeout=3.0):
        """Logs in, retrying while an earlier (dropped) session still
        holds the lock."""
        deadline = time.monotonic() + timeout * h.SLOW
        while True:
            c, r = self.srv.login(user, "pw-" + user)
            self.addCleanup(c.close)
            if r.startswith("+OK mailbox ready") or \
               r != h.ERR_IN_USE or time.monotonic() > deadline:
                self.assertTrue(r.startswith("+OK mailbox ready"), r)
                return c
            c.close()
            time.sleep(0.1)

    def uidl(self, c):
        st, lines = c.multi("UIDL")
        self.assertEqual(st[:3], "+OK")
        out = {}
        for l in lines:
            n, uid = l.split(" ")
            self.assertRegex(uid, UID_RE)
            out[int(n)] = uid
        return out

    def content_by_uid(self, c):
        return {uid: c.retr(n)[1] for n, uid in self.uidl(c).items()}

    def test_uidl_format_and_stable_across_sessions(self):
        c = self.login("stable")
        u1 = self.uidl(c)
        self.assertEqual(sorted(u1), [1, 2, 3, 4, 5])
        self.assertEqual(len(set(u1.values())), 5, "UIDs not distinct")
        for n, uid in u1.items():
            self.assertEqual(c.cmd("UIDL %d" % n), "+OK %d %s" % (n, uid))
        by_uid = self.content_by_uid(c)
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        for _ in range(2):
            c = self.login_retry("stable")
            self.assertEqual(self.content_by_uid(c), by_uid)
            c.cmd("QUIT")

    def test_uidl_stable_after_deleting_others(self):
        c = self.login("others")
        u0 = self.uidl(c)
        before = self.content_by_uid(c)
        self.assertEqual(c.cmd("DELE 2"), "+OK message 2 deleted")
        self.assertEqual(c.cmd("DELE 4"), "+OK message 4 deleted")
        gone = {u0[2], u0[4]}
        self.assertEqual(set(self.uidl(c).values()), set(u0.values()) - gone)
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 2 messages deleted")
        c = self.login_retry("others")
        after = self.content_by_uid(c)
        self.assertEqual(len(after), 3)
        for uid, body in after.items():
            self.assertIn(uid, before, "UID changed after deleting others")
            self.assertEqual(before[uid], body)
        self.assertFalse(set(after) & gone)

    def test_uidl_distinct_for_identical_messages(self):
        c = self.login("twins")
        u = self.uidl(c)
        self.assertEqual(len(u), 3)
        self.assertEqual(len(set(u.values())), 3, u)
        bodies = {c.retr(n)[1] for n in u}
        self.assertEqual(len(bodies), 1)
        c.cmd("QUIT")
        c = self.login_retry("twins")
        self.assertEqual(self.uidl(c), u)

    def test_uidl_of_new_mail_stays(self):
        srv = self.srv
        m = srv.add_message("newmail", msg(9, "new"), subdir="new")
        uids = []
        for i in range(3):
            c = self.login_retry("newmail")
            by = self.content_by_uid(c)
            uid = [k for k, v in by.items() if v == m.wire]
            self.assertEqual(len(uid), 1, "new/ message not listed")
            uids.append(uid[0])
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertEqual(len(set(uids)), 1, uids)

    def test_dele_quit_removes_the_file(self):
        u = self.srv.users["dele"]
        c = self.login("dele")
        b3 = c.retr(3)[1]
        self.assertEqual(c.cmd("DELE 3"), "+OK message 3 deleted")
        # not before QUIT
        self.assertTrue(all(m.exists() for m in u.msgs))
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 1 messages deleted")
        self.assertTrue(c.is_closed())
        gone = [m for m in u.msgs if not m.exists()]
        self.assertEqual(len(gone), 1)
        self.assertEqual(gone[0].wire, b3)
        # and no stray copy elsewhere in the Maildir
        found = []
        for root, dirs, files in os.walk(u.maildir):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    if fh.read() == gone[0].data:
                        found.append(os.path.join(root, f))
        self.assertEqual(found, [])
        c = self.login_retry("dele")
        self.assertTrue(c.cmd("STAT").startswith("+OK 4 "))

    def test_dropped_connection_deletes_nothing(self):
        u = self.srv.users["drop"]
        c = self.login("drop")
        for n in range(1, 6):
            self.assertEqual(c.cmd("DELE %d" % n), "+OK message %d deleted"
                             % n)
        c.close()
        self.srv.wait_log(r"logout: user=drop ")
        time.sleep(0.2)
        self.assertTrue(all(m.exists() for m in u.msgs),
                        "a dropped connection deleted messages")
        c = self.login_retry("drop")
        self.assertTrue(c.cmd("STAT").startswith("+OK 5 "))

    def test_kill9_worker_deletes_nothing(self):
        u = self.srv.users["kill"]
        start = self.srv.log_size()
        c = self.login("kill")
        pid = self.srv.worker_pid_of_login("kill", start=start)
        self.assertNotEqual(pid, self.srv.pid, "login pid= is the master")
        self.assertIn(pid, self.srv.descendants())
        for n in range(1, 6):
            self.assertEqual(c.cmd("DELE %d" % n), "+OK message %d deleted"
                             % n)
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(c.is_closed(3), "session survived kill -9")
        time.sleep(0.2)
        self.assertTrue(all(m.exists() for m in u.msgs),
                        "messages deleted after kill -9 of the worker")
        self.assertTrue(self.srv.alive(), "master died with its worker")
        c = self.login_retry("kill")
        self.assertTrue(c.cmd("STAT").startswith("+OK 5 "))
        # the master replaced the worker: more sessions still work
        for _ in range(3):
            c2 = self.client(self.srv)
            self.assertEqual(c2.cmd("NOOP"), h.ERR_STATE)

    def test_kill9_idle_worker_is_replaced(self):
        start = self.srv.log_size()
        c = self.login("kill-idle")
        pid = self.srv.worker_pid_of_login("kill-idle", start=start)
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed())
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        for _ in range(4):
            c = self.login_retry("kill-idle")
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    def test_rset_then_quit_deletes_nothing(self):
        u = self.srv.users["rset"]
        c = self.login("rset")
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        self.assertEqual(c.cmd("DELE 5"), "+OK message 5 deleted")
        self.assertTrue(c.cmd("RSET").startswith("+OK 5 messages ("))
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed())
        self.assertTrue(all(m.exists() for m in u.msgs))

    def test_in_use(self):
        a = self.login("inuse")
        b, r = self.srv.login("inuse", "pw-inuse")
        self.addCleanup(b.close)
        self.assertEqual(r, h.ERR_IN_USE)
        # the first session is not disturbed
        self.assertEqual(a.cmd("NOOP"), "+OK")
        self.assertTrue(a.cmd("STAT").startswith("+OK 5 "))
        # a third try while it is still open
        c, r = self.srv.login("inuse", "pw-inuse")
        self.addCleanup(c.close)
        self.assertEqual(r, h.ERR_IN_USE)
        self.assertEqual(a.cmd("QUIT"), "+OK bye, 0 messages deleted")
        c, r = self.srv.login("inuse", "pw-inuse")
        self.addCleanup(c.close)
        self.assertTrue(r.startswith("+OK mailbox ready"), r)

    def test_update_failure_reported(self):
        u = self.srv.users["update-fail"]
        c = self.login("update-fail")
        cur = os.path.join(u.maildir, "cur")
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        os.chmod(cur, 0o555)
        self.addCleanup(os.chmod, cur, 0o700)
        r = c.cmd("QUIT")
        self.assertEqual(r, h.ERR_NOT_REMOVED)
        self.assertTrue(c.is_closed())
        self.assertTrue(all(m.exists() for m in u.msgs))


    def test_half_closed_client_gets_update(self):
        # printf 'USER..PASS..DELE 1\r\nQUIT\r\n' | nc -N: the client
        # shuts down its side right after the last command
        u = self.srv.users["halfclose"]
        c = h.Pop3(self.srv.port, greet=False)
        self.addCleanup(c.close)
        c.send("USER halfclose\r\nPASS pw-halfclose\r\nDELE 1\r\n"
               "QUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        lines = c.lines_until_eof(timeout=5 * h.SLOW)
        self.assertEqual(len(lines), 5, lines)
        self.assertEqual(lines[0], h.GREETING)
        self.assertTrue(lines[2].startswith("+OK mailbox ready, 5 "), lines)
        self.assertEqual(lines[3:], ["+OK message 1 deleted",
                                     "+OK bye, 1 messages deleted"])
        self.assertEqual(sum(not m.exists() for m in u.msgs), 1)

    def test_half_closed_client_without_quit(self):
        u = self.srv.users["halfdrop"]
        c = h.Pop3(self.srv.port, greet=False)
        self.addCleanup(c.close)
        c.send("USER halfdrop\r\nPASS pw-halfdrop\r\nDELE 1\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        lines = c.lines_until_eof(timeout=5 * h.SLOW)
        self.assertEqual(lines[-1], "+OK message 1 deleted", lines)
        self.srv.wait_log(r"logout: user=halfdrop ")
        time.sleep(0.1)
        self.assertTrue(all(m.exists() for m in u.msgs))


class NoUpdateOnStopTest(PosternTest):
    def test_sigterm_during_session_deletes_nothing(self):
        srv = self.server([User("alice", "pw", FIVE)])
        c = self.logged_in(srv, "alice", "pw")
        for n in (1, 2, 3):
            c.cmd("DELE %d" % n)
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(all(m.exists() for m in srv.users["alice"].msgs))


if __name__ == "__main__":
    h.main()
