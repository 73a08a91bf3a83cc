#!/usr/bin/env python3
"""Real clients against the daemon: curl, fetchmail and mpop fetch every
message intact; keep+UIDL fetches nothing twice; delete mode deletes."""

import os
import pwd
import re
import shutil
import subprocess
import tempfile

import postern_harness as h
from postern_harness import PosternTest, User

PW = "Client-pw-42"

MESSAGES = [
    b"From: a@example.org\nTo: alice@example.org\nSubject: plain\n\n"
    b"Hello.\n",
    b"From: a@example.org\nSubject: dots\n\n.leading dot\n..two\n.\n"
    b"after lone dot\n",
    b"From: a@example.org\r\nSubject: crlf\r\n\r\nCRLF body\r\nline\r\n",
    b"From: a@example.org\nSubject: no final newline\n\nlast line",
    "From: a@example.org\nSubject: 8bit\nContent-Type: text/plain; "
    "charset=utf-8\n\ngrüße ça va 日本\n".encode("utf-8"),
    b"From: a@example.org\nSubject: big\n\n"
    + b"".join(b"line %06d " % i + b"x" * 60 + b"\n" for i in range(5000)),
]


def lf_form(data):
    """What a client that strips CRs hands its MDA."""
    return h.to_wire(data).replace(b"\r\n", b"\n")


def strip_received(data):
    """Drops a Received: header (with continuation lines) a client put
    in front of the message."""
    m = re.match(rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*", data)
    return data[m.end():] if m else data


def need(tool):
    path = shutil.which(tool)
    if path is None:
        raise AssertionError("%s is not installed (scripts/deps installs "
                             "fetchmail, mpop and curl)" % tool)
    return path


class ClientsTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        users = [User(n, PW, MESSAGES) for n in
                 ("curl", "curldele", "fm", "fmflush", "mpop", "mpopdel")]
        cls.srv = cls.class_server(users)

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="postern-client-")
        self.addCleanup(shutil.rmtree, self.home, True)

    def curl(self, *args):
        p = subprocess.run([need("curl"), "-s", "-S", "--max-time",
                            str(int(30 * h.SLOW))] + list(args),
                           capture_output=True, timeout=60 * h.SLOW)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p.stdout

    def url(self, path=""):
        return "pop3://127.0.0.1:%d/%s" % (self.srv.port, path)

    # ---- curl ----------------------------------------------------------
    def test_curl_retr_list_uidl(self):
        auth = ["-u", "curl:" + PW]
        listing = self.curl(*auth, self.url())
        lines = listing.decode().split("\r\n")
        self.assertEqual(lines[-1], "")
        sizes = {int(l.split()[0]): int(l.split()[1]) for l in lines[:-1]}
        self.assertEqual(sorted(sizes), list(range(1, len(MESSAGES) + 1)))
        got = []
        for n, size in sizes.items():
            body = self.curl(*auth, self.url(str(n)))
            self.assertEqual(len(body), size, "message %d" % n)
            got.append(body)
        self.assertCountEqual(got, [h.to_wire(m) for m in MESSAGES])
        uidl = self.curl(*auth, "-X", "UIDL", self.url()).decode()
        ul = uidl.split("\r\n")[:-1]
        self.assertEqual(len(ul), len(MESSAGES))
        self.assertEqual(len({l.split()[1] for l in ul}), len(MESSAGES))

    def test_curl_dele(self):
        u = self.srv.users["curldele"]
        body = self.curl("-u", "curldele:" + PW, self.url("2"))
        self.curl("-u", "curldele:" + PW, "-X", "DELE", "-I", self.url("2"))
        left = [m for m in u.msgs if m.exists()]
        self.assertEqual(len(left), len(MESSAGES) - 1)
        self.assertNotIn(body, [m.wire for m in left])

    def test_curl_wrong_password(self):
        p = subprocess.run([need("curl"), "-s", "-u", "curl:wrong",
                            self.url("1")], capture_output=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(p.stdout, b"")

    # ---- fetchmail -----------------------------------------------------
    def fetchmail(self, user, keep=True, tag="run"):
        out = os.path.join(self.home, "out-" + tag)
        os.makedirs(out, exist_ok=True)
        me = pwd.getpwuid(os.getuid()).pw_name
        rc = os.path.join(self.home, "fetchmailrc")
        with open(rc, "w") as f:
            f.write('set no bouncemail\n'
                    'poll 127.0.0.1 protocol pop3 port %d auth password '
                    'uidl timeout 30\n'
                    '  user "%s" there with password "%s" is "%s" here\n'
                    '  options %s norewrite sslproto "" %s\n'
                    '  mda "/bin/sh -c \'cat > %s/msg.$$\'"\n'
                    % (self.srv.port, user, PW, me,
                       "keep" if keep else "nokeep",
                       "" if keep else "fetchall", out))
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=self.home, FETCHMAILHOME=self.home)
        p = subprocess.run([need("fetchmail"), "-f", rc, "--nodetach",
                            "--nosyslog", "--invisible", "--idfile",
                            os.path.join(self.home, "idfile"),
                            # as root fetchmail otherwise locks a pidfile
                            # shared by every fetchmail on the machine
                            "--pidfile", os.path.join(self.home, "pid")],
                           capture_output=True, env=env,
                           timeout=60 * h.SLOW)
        got = []
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), "rb") as fh:
                got.append(strip_received(fh.read()))
        return p.returncode, got, (p.stdout + p.stderr).decode()

    def test_fetchmail_keep_uidl(self):
        rc, got, log = self.fetchmail("fm", tag="1")
        self.assertEqual(rc, 0, log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        # second run: UIDL says everything was seen
        rc, got, log = self.fetchmail("fm", tag="2")
        self.assertEqual(rc, 1, "fetchmail exit 1 = no new mail; " + log)
        self.assertEqual(got, [])
        # a new message is the only one fetched by the third run
        new = b"From: a@example.org\nSubject: newer\n\nnew mail\n"
        self.srv.add_message("fm", new, subdir="new")
        rc, got, log = self.fetchmail("fm", tag="3")
        self.assertEqual(rc, 0, log)
        self.assertEqual(got, [lf_form(new)])
        self.assertTrue(all(m.exists() for m in self.srv.users["fm"].msgs))

    def test_fetchmail_flush_deletes(self):
        rc, got, log = self.fetchmail("fmflush", keep=False, tag="1")
        self.assertEqual(rc, 0, log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        self.assertEqual([m for m in self.srv.users["fmflush"].msgs
                          if m.exists()], [])
        c = self.logged_in(self.srv, "fmflush", PW)
        self.assertEqual(c.cmd("STAT"), "+OK 0 0")

    # ---- mpop ----------------------------------------------------------
    def mpop(self, user, keep=True, tag="run"):
        md = os.path.join(self.home, "md-" + tag)
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, d), exist_ok=True)
        p = subprocess.run([need("mpop"), "--host=127.0.0.1",
                            "--port=%d" % self.srv.port, "--tls=off",
                            "--auth=user", "--user=" + user,
                            "--passwordeval=echo " + PW,
                            "--keep=" + ("on" if keep else "off"),
                            "--uidls-file=" + os.path.join(self.home,
                                                           "uidls"),
                            "--delivery=maildir," + md,
                            "--received-header=off", "--timeout=30"],
                           capture_output=True, timeout=60 * h.SLOW,
                           env=dict(os.environ, HOME=self.home))
        got = []
        for d in ("new", "cur"):
            for name in sorted(os.listdir(os.path.join(md, d))):
                with open(os.path.join(md, d, name), "rb") as fh:
                    got.append(fh.read())
        return p.returncode, got, (p.stdout + p.stderr).decode()

    def test_mpop_keep_uidl(self):
        rc, got, log = self.mpop("mpop", tag="1")
        self.assertEqual(rc, 0, log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        rc, got, log = self.mpop("mpop", tag="2")
        self.assertEqual(rc, 0, log)
        self.assertEqual(got, [])

    def test_mpop_delete(self):
        rc, got, log = self.mpop("mpopdel", keep=False, tag="1")
        self.assertEqual(rc, 0, log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        self.assertEqual([m for m in self.srv.users["mpopdel"].msgs
                          if m.exists()], [])


if __name__ == "__main__":
    h.main()
