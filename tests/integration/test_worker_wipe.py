#!/usr/bin/env python3
"""A reused worker keeps nothing of the last session: after alice's
session, her plaintext password and the bytes of her message appear
nowhere in the idle worker's memory (read through /proc/PID/mem), and bob,
served next by the same worker, sees only his own mailbox."""

import os
import secrets
import time

import postern_harness as h
from postern_harness import PosternTest, User


def mappings(pid):
    """[(lo, hi, perms, name, rss_kb)] from /proc/PID/smaps."""
    out = []
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split(None, 5)
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                name = head[5].strip() if len(head) > 5 else ""
                out.append([lo, hi, head[1], name, 0])
            elif line.startswith("Rss:") and out:
                out[-1][4] = int(line.split()[1])
    return out


def read_memory(pid):
    """[(region description, bytes)] of every readable mapping of pid
    with resident pages. Raises PermissionError when the process cannot
    be read at all."""
    out = []
    maps = mappings(pid)
    fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY)
    try:
        readable = 0
        for lo, hi, perms, name, rss in maps:
            if "r" not in perms or name in ("[vvar]", "[vsyscall]",
                                             "[vvar_vclock]"):
                continue
            if rss == 0:
                continue  # nothing resident: zero pages only
            if hi - lo > 1 << 32:
                # sanitizer shadow memory (terabytes, no user bytes)
                continue
            chunks = []
            pos = lo
            while pos < hi:
                n = min(hi - pos, 1 << 24)
                try:
                    chunks.append(os.pread(fd, n, pos))
                    readable += 1
                except OSError:
                    break
                pos += n
            out.append(("%x-%x %s %s" % (lo, hi, perms, name),
                        b"".join(chunks)))
        if not readable:
            raise PermissionError("no readable region in /proc/%d/mem" % pid)
    finally:
        os.close(fd)
    return out


def private_dirty_kb(pid):
    return h.proc_field(pid, "smaps_rollup", "Private_Dirty")


def find_in_memory(pid, needles):
    """{needle: [where]} for each needle found in pid's memory."""
    found = {}
    for where, data in read_memory(pid):
        for nd in needles:
            i = data.find(nd)
            while i >= 0:
                found.setdefault(nd, []).append("%s +0x%x" % (where, i))
                if len(found[nd]) > 5:
                    break
                i = data.find(nd, i + 1)
    return found


class WorkerWipeTest(PosternTest):
    maxDiff = None

    def setUp(self):
        self.password = "Pw-%s-alice" % secrets.token_hex(12)
        self.marker = "MARKER-%s-alice-secret" % secrets.token_hex(12)
        self.bob_marker = "BOBMARK-%s" % secrets.token_hex(8)
        alice_msgs = [
            # no ,W= in its name: the size is computed from the bytes
            (("From: a@example.org\nSubject: private %s\n\n%s\nline "
              "two\n" % (self.marker, self.marker)).encode(), {"w": False}),
            # a bigger one, so the marker goes through full buffers
            (("From: a@example.org\nSubject: big\n\n" + ("%s filler\n"
              % self.marker) * 20000).encode(), {"w": True}),
        ]
        bob_msgs = [("From: b@example.org\nSubject: bob %s\n\nbob\n"
                     % self.bob_marker).encode()]
        self.srv = self.server(
            [User("alice", self.password, alice_msgs, scheme="sha512"),
             User("bob", "bob-pw-1234", bob_msgs)],
            server={"spare_workers": 1, "max_sessions": 2},
            # meson sets MALLOC_PERTURB_, which makes glibc scrub freed
            # memory and would hide a buffer freed without a wipe
            env_unset=("MALLOC_PERTURB_",))

    def alice_session(self, pipelined=False, pause=False):
        start = self.srv.log_size()
        c = self.client(self.srv, greet=not pipelined)
        if pipelined:
            c.send("USER alice\r\nPASS %s\r\nSTAT\r\n" % self.password)
            self.assertEqual(c.line(), h.GREETING)
            self.assertTrue(c.line().startswith("+OK"))
            self.assertTrue(c.line().startswith("+OK mailbox ready"))
            c.line()
        else:
            self.assertTrue(c.login("alice", self.password).startswith(
                "+OK mailbox ready"))
        for n in (1, 2):
            st, body = c.retr(n)
            self.assertIn(self.marker.encode(), body)
        if pause:
            # silent past IDLE_RELEASE_MS: the session gives pages back
            # but keeps the first page of its output buffer
            time.sleep(1.5 * h.SLOW)
        c.send("TOP 1 1\r\nUIDL\r\n")
        self.assertTrue(c.line().startswith("+OK"))
        c.multi_lines()
        self.assertTrue(c.line().startswith("+OK"))
        c.multi_lines()
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed())
        m = self.srv.wait_log(r"logout: user=alice peer=\S+ pid=(\d+)",
                              start=start)
        time.sleep(0.2)  # let the worker finish its wipe and go idle
        return int(m.group(1))

    def assert_clean(self, pid, what):
        needles = [self.password.encode(), self.marker.encode(),
                   self.marker[7:31].encode()]
        try:
            found = find_in_memory(pid, needles)
        except PermissionError as e:
            self.skipTest("cannot read /proc/%d/mem: %s" % (pid, e))
        # control: the scan does see what the worker inherited from the
        # master (its passwd-file path), so an empty result means clean
        ctl = find_in_memory(pid, [self.srv.passwd_path.encode()])
        self.assertTrue(ctl, "memory scan of pid %d found not even the "
                        "passwd-file path: scanner broken" % pid)
        report = {nd.decode(): wh for nd, wh in found.items()}
        self.assertEqual(report, {}, "%s (pid %d) still holds alice's "
                         "secrets" % (what, pid))

    def connect(self):
        """A greeted connection, retrying while max_sessions (2) still
        counts a connection that was just closed."""
        deadline = time.monotonic() + 5 * h.SLOW
        while True:
            c = self.client(self.srv, greet=False)
            try:
                line = c.line()
            except (h.Closed, OSError):
                line = ""
            if line == h.GREETING:
                return c
            c.close()
            self.assertLess(time.monotonic(), deadline, line)
            time.sleep(0.05)

    def bob_session_on(self, pid, tries=8):
        """Runs bob sessions until one is served by worker pid (with at
        most two workers, every other try keeps the first idle worker busy
        with a placeholder session); returns True when one was."""
        for i in range(tries):
            ph = None
            if i % 2:
                ph = self.connect()
                self.assertTrue(ph.cmd("USER placeholder").startswith("+OK"))
            start = self.srv.log_size()
            c = self.connect()
            self.assertTrue(c.login("bob", "bob-pw-1234").startswith(
                "+OK mailbox ready"))
            bpid = self.srv.worker_pid_of_login("bob", start=start)
            st = c.cmd("STAT")
            self.assertEqual(st, "+OK 1 %d" % len(
                self.srv.users["bob"].msgs[0].wire))
            st, body = c.retr(1)
            self.assertIn(self.bob_marker.encode(), body)
            self.assertNotIn(self.marker.encode(), body)
            self.assertEqual(c.cmd("RETR 2"), h.ERR_NO_SUCH)
            self.assertEqual(c.cmd("TOP 2 0"), h.ERR_NO_SUCH)
            st, lines = c.multi("UIDL")
            self.assertEqual(len(lines), 1)
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
            c.close()
            self.srv.wait_log(r"logout: user=bob .*pid=%d" % bpid,
                              start=start)
            if ph is not None:
                ph.cmd("QUIT")
                ph.close()
            if bpid == pid:
                time.sleep(0.2)
                return True
        return False

    def test_idle_worker_forgets_alice(self):
        pid = self.alice_session()
        self.assertIn(pid, self.srv.descendants(),
                      "worker exited: not a reused worker")
        self.assert_clean(pid, "idle worker after alice")
        self.assertTrue(self.bob_session_on(pid),
                        "bob never got alice's worker %d" % pid)
        self.assert_clean(pid, "worker after alice then bob")

    def test_idle_worker_gives_pages_back(self):
        # A worker left waiting for a second hands back its buffers, its
        # session memory's spare pages and the crypt work area (32 KB),
        # all wiped first: its private memory drops, and no secret
        # comes back with it.
        pid = self.alice_session()
        busy = private_dirty_kb(pid)
        time.sleep(1.5 * h.SLOW)
        idle = private_dirty_kb(pid)
        self.assertLessEqual(idle, busy - 32,
                             "worker %d: %d KB private before its idle "
                             "release, %d KB after" % (pid, busy, idle))
        self.assert_clean(pid, "worker after its idle release")

    def test_pipelined_login_leaves_nothing(self):
        # USER and PASS in the client's first bytes: the master sees them
        # first and must not keep the password either.
        pid = self.alice_session(pipelined=True)
        self.assert_clean(pid, "idle worker after a pipelined login")
        self.assert_clean(self.srv.pid, "master")

    def test_idle_pause_leaves_nothing(self):
        # A big RETR, a pause that releases idle buffers, then only short
        # replies: the kept output page must still be wiped at the end.
        pid = self.alice_session(pause=True)
        self.assert_clean(pid, "idle worker after a session with a pause")

    def test_failed_login_leaves_nothing(self):
        start = self.srv.log_size()
        c = self.client(self.srv)
        self.assertTrue(c.cmd("USER alice").startswith("+OK"))
        wrong = self.password[:-5] + "WRONG"
        self.assertEqual(c.cmd("PASS " + wrong), h.ERR_BAD_LOGIN)
        self.assertTrue(c.cmd("USER alice").startswith("+OK"))
        self.assertTrue(c.cmd("PASS " + self.password).startswith("+OK"))
        pid = self.srv.worker_pid_of_login("alice", start=start)
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(c.is_closed())
        self.srv.wait_log(r"logout: user=alice ", start=start)
        time.sleep(0.2)
        try:
            found = find_in_memory(pid, [wrong.encode(),
                                         self.password.encode()])
        except PermissionError as e:
            self.skipTest("cannot read /proc/%d/mem: %s" % (pid, e))
        self.assertEqual({k.decode(): v for k, v in found.items()}, {})


if __name__ == "__main__":
    h.main()
