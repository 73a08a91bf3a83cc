#!/usr/bin/env python3
"""Byte-exact RETR and TOP of awkward messages; LIST/STAT sizes equal the
octets RETR sends before dot-stuffing."""

import os
import random
import re

import postern_harness as h
from postern_harness import PosternTest, User


def hdr(name, nl=b"\n"):
    return (b"From: a@example.org" + nl + b"Subject: case-" + name.encode()
            + b";" + nl + b"X-Case: case-" + name.encode() + b";" + nl + nl)


def boundary_message(name, boundary, what, nl=b"\r\n"):
    """A message whose file bytes put `what` (a line end) right before
    the ".after-boundary" line, starting at file offset boundary - 1."""
    head = hdr(name, nl)
    pad = boundary - len(head) - 1
    body = bytearray()
    while pad > 80:
        body += b"p" * (80 - len(nl)) + nl
        pad -= 80
    body += b"q" * pad
    msg = bytes(head + body)
    assert len(msg) == boundary - 1
    return msg + what + b".after-boundary" + nl + b"last line" + nl


def random_dotty(seed, n_lines):
    rnd = random.Random(seed)
    out = bytearray(hdr("random%d" % seed))
    for _ in range(n_lines):
        k = rnd.choice([0, 1, 2, 5, 70, 200, 999, 4000])
        line = bytes(rnd.choice(b".ab\x80\xff \t.") for _ in range(k))
        if rnd.random() < 0.3:
            line = b"." + line
        out += line + rnd.choice([b"\n", b"\r\n"])
    return bytes(out)


CASES = {
    "dots": hdr("dots") + b".hidden\n..double\n...triple\n.\n. space\n"
            b"end\n.\n",
    "lone-dot-last": hdr("lone-dot-last") + b"text\n.\n",
    "dot-dot-only": hdr("dot-dot-only") + b"..\n",
    "lf": hdr("lf") + b"line one\nline two\n\nline four\n",
    "crlf": hdr("crlf", b"\r\n") + b"line one\r\nline two\r\n\r\nfour\r\n",
    "mixed": hdr("mixed") + b"lf\ncrlf\r\nlf\n\r\n\ncrlf\r\n.dot-crlf\r\n"
             b".dot-lf\n",
    "no-final-newline": hdr("no-final-newline") + b"first\nlast line",
    "no-final-newline-dot": hdr("no-final-newline-dot") + b"first\n.",
    "8bit": hdr("8bit") + bytes(range(0x80, 0x100)) + b"\n"
            + "grüße, ça va? 日本語\n".encode("utf-8")
            + bytes(range(1, 10)) + bytes(range(11, 13))
            + bytes(range(14, 32)) + b"\x7f\n",
    "nul": hdr("nul") + b"before\x00after\n\x00\n\x00.\n",
    "one-mb-line": hdr("one-mb-line") + b"A" * (1 << 20) + b"\n",
    "one-mb-line-dot": hdr("one-mb-line-dot") + b"." + b"B" * (1 << 20),
    "many-dot-lines": hdr("many-dot-lines") + b".x\n" * 30000,
    "empty-body": hdr("empty-body"),
    "blank-lines": hdr("blank-lines") + b"\n\n\n\n",
    "long-header": b"Subject: case-long-header;\n" + b"X-Long: "
                   + b"h" * 5000 + b"\n\n.body\n",
    "random1": random_dotty(1, 400),
    "random2": random_dotty(2, 900),
}
for b in (4096, 8192, 16384, 65536, 131072):
    CASES["crlf-at-%d" % b] = boundary_message("crlf-at-%d" % b, b,
                                              b"\r\n")
    # CRLF just before the boundary: the "." of the next line is the
    # first octet past it
    CASES["dot-at-%d" % b] = boundary_message("dot-at-%d" % b, b - 1,
                                             b"\r\n")
    CASES["lf-at-%d" % b] = boundary_message("lf-at-%d" % b, b + 1,
                                            b"\n", nl=b"\n")
    CASES["lf-dot-at-%d" % b] = boundary_message("lf-dot-at-%d" % b, b,
                                                b"\n", nl=b"\n")

EMPTY = b""
TOKEN = re.compile(rb"case-([a-z0-9-]+);")


def case_of(wire):
    m = TOKEN.search(wire[:20000])
    return m.group(1).decode() if m else ""


class MessagesTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        u = User("alice", "alice-pw")
        srv = cls.class_server([u, User("bob", "bob-pw"),
                                User("carol", "carol-pw"),
                                User("dave", "dave-pw",
                                     [hdr("x") + b"one\n"])],
                               start=False)
        for i, (name, data) in enumerate(CASES.items()):
            srv.add_message("alice", data, w=(i % 2 == 0))
        srv.add_message("alice", EMPTY, w=True)
        # byte-identical content, once with ,W= and once without
        same = hdr("same") + b"same\nbody\n.\n"
        srv.add_message("bob", same, w=True)
        srv.add_message("bob", same, w=False)
        # one stored with CRLF and ,W=, one in new/ without a flag suffix
        srv.add_message("bob", hdr("bob-new") + b"new mail\n", subdir="new",
                        w=False)
        srv.add_message("bob", hdr("bob-new-w") + b"new mail\n",
                        subdir="new", w=True)
        if h.IS_ROOT:
            h.chown_tree(srv.tmp)
        srv.start()
        cls.srv = srv
        cls.expected = {name: h.to_wire(d) for name, d in CASES.items()}
        cls.raw = dict(CASES)

    def fetch_all(self, user):
        c = self.logged_in(self.srv, user, self.srv.users[user].password)
        st, lines = c.multi("LIST")
        sizes = {int(l.split()[0]): int(l.split()[1]) for l in lines}
        bodies = {}
        for n in sorted(sizes):
            st, body = c.retr(n, timeout=30 * h.SLOW)
            self.assertTrue(st.startswith("+OK"), "RETR %d: %s" % (n, st))
            bodies[n] = (st, body)
        return c, sizes, bodies

    def test_retr_byte_exact_and_sizes(self):
        c, sizes, bodies = self.fetch_all("alice")
        self.assertEqual(len(sizes), len(CASES) + 1)
        got = {}
        problems = []
        for n, (st, body) in bodies.items():
            name = case_of(body)
            if name in got:
                problems.append("case %s twice (message %d)" % (name, n))
            got[name] = body
            if st != "+OK %d octets" % sizes[n]:
                problems.append("message %d (%s): RETR said %r, LIST %d"
                                % (n, name or "empty", st, sizes[n]))
            if len(body) != sizes[n]:
                problems.append("message %d (%s): RETR sent %d octets, "
                                "LIST says %d" % (n, name or "empty",
                                                  len(body), sizes[n]))
        for name, want in self.expected.items():
            body = got.get(name)
            if body is None:
                problems.append("case %s: not retrieved" % name)
            elif body != want:
                i = next((k for k in range(min(len(body), len(want)))
                          if body[k] != want[k]),
                         min(len(body), len(want)))
                problems.append(
                    "case %s: differs at octet %d of %d/%d: got %r, "
                    "want %r" % (name, i, len(body), len(want),
                                 body[max(0, i - 20):i + 20],
                                 want[max(0, i - 20):i + 20]))
        empty = got.get("")
        if empty not in (b"", b"\r\n"):
            problems.append("empty message: got %r" % (empty,))
        self.assertEqual(problems, [])
        st = c.cmd("STAT")
        self.assertEqual(st, "+OK %d %d" % (len(sizes), sum(sizes.values())))

    def test_raw_dot_stuffing(self):
        # Every line of the raw reply that starts with "." is either the
        # terminator or stuffed ("..").
        c = self.logged_in(self.srv, "alice", "alice-pw")
        st, lines = c.multi("LIST")
        n = None
        for l in lines:
            num = int(l.split()[0])
            c.send("TOP %d 0\r\n" % num)
            self.assertTrue(c.line().startswith("+OK"))
            if b"case-dots;" in c.multi_raw():
                n = num
        self.assertIsNotNone(n)
        c.send("RETR %d\r\n" % n)
        self.assertTrue(c.line().startswith("+OK"))
        raw = []
        while True:
            line = c.rawline()
            if line == b".":
                break
            raw.append(line)
        body = CASES["dots"].split(b"\n\n", 1)[1]
        want = [b"." + l if l.startswith(b".") else l
                for l in body.rstrip(b"\n").split(b"\n")]
        self.assertEqual(raw[-len(want):], want)

    def test_top(self):
        c = self.logged_in(self.srv, "alice", "alice-pw")
        st, lines = c.multi("LIST")
        problems = []
        for l in lines:
            n, size = map(int, l.split())
            st = c.cmd("TOP %d 0" % n)
            self.assertTrue(st.startswith("+OK"), st)
            top0 = c.multi_raw()
            name = case_of(top0)
            if not name:
                if top0 not in (b"", b"\r\n"):
                    problems.append("TOP %d 0 of empty message: %r"
                                    % (n, top0[:100]))
                continue
            data = self.raw[name]
            for k in (0, 1, 3, 1000000):
                if k:
                    st = c.cmd("TOP %d %d" % (n, k))
                    self.assertTrue(st.startswith("+OK"), st)
                    got = c.multi_raw(timeout=30 * h.SLOW)
                else:
                    got = top0
                want = h.expected_top(data, k)
                if got != want:
                    problems.append("TOP %d %d (%s): got %d octets %r..., "
                                    "want %d octets %r..."
                                    % (n, k, name, len(got), got[-60:],
                                       len(want), want[-60:]))
            # TOP beyond the body is the whole message
            if h.expected_top(data, 1000000) != h.to_wire(data):
                problems.append("test bug: %s" % name)
        self.assertEqual(problems, [])

    def test_identical_messages_with_and_without_w(self):
        c = self.logged_in(self.srv, "bob", "bob-pw")
        st, lines = c.multi("LIST")
        self.assertEqual(st.split()[:2], ["+OK", "4"])
        bodies = [c.retr(n)[1] for n in (1, 2, 3, 4)]
        same = h.to_wire(hdr("same") + b"same\nbody\n.\n")
        self.assertEqual(sorted(bodies).count(same), 2)
        sizes = [int(l.split()[1]) for l in lines]
        for b, s in zip(bodies, sizes):
            self.assertEqual(len(b), s)
        # both new/ messages are listed
        names = {case_of(b) for b in bodies}
        self.assertEqual(names, {"same", "bob-new", "bob-new-w"})

    def test_message_vanished_during_session(self):
        c = self.logged_in(self.srv, "dave", "dave-pw")
        self.assertTrue(c.cmd("STAT").startswith("+OK 1 "))
        for m in self.srv.users["dave"].msgs:
            os.unlink(m.path)
        r = c.cmd("RETR 1")
        self.assertTrue(r.startswith("-ERR"), r)
        self.assertEqual(c.cmd("NOOP"), "+OK")
        r = c.cmd("TOP 1 0")
        self.assertTrue(r.startswith("-ERR"), r)
        self.assertEqual(c.cmd("NOOP"), "+OK")
        self.assertTrue(c.cmd("QUIT").startswith("+OK bye"))


class DeliveryTest(PosternTest):
    def test_mail_delivered_during_session(self):
        srv = self.server([User("erin", "erin-pw",
                                [hdr("e1") + b"one\n", hdr("e2") + b"two\n"])])
        c = self.logged_in(srv, "erin", "erin-pw")
        self.assertTrue(c.cmd("STAT").startswith("+OK 2 "))
        new1 = srv.add_message("erin", hdr("e3") + b"three\n", subdir="new")
        new2 = srv.add_message("erin", hdr("e4") + b"four\n", subdir="cur")
        # the session's message list does not change under it
        self.assertTrue(c.cmd("STAT").startswith("+OK 2 "))
        self.assertEqual(c.cmd("LIST 3"), h.ERR_NO_SUCH)
        first = c.retr(1)[1]
        self.assertEqual(c.cmd("DELE 1"), "+OK message 1 deleted")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 1 messages deleted")
        self.assertTrue(c.is_closed())
        self.assertTrue(os.path.exists(new2.path))
        c = self.logged_in(srv, "erin", "erin-pw")
        st, lines = c.multi("LIST")
        self.assertEqual(len(lines), 3, st)
        bodies = {case_of(c.retr(n)[1]) for n in (1, 2, 3)}
        self.assertEqual(bodies, {"e1", "e2", "e3", "e4"} - {case_of(first)})


if __name__ == "__main__":
    h.main()
