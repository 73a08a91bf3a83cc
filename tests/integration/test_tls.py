#!/usr/bin/env python3
"""TLS: STLS (RFC 2595) and implicit TLS (RFC 8314) against real clients
(openssl s_client, Python's poplib and ssl, curl, fetchmail, mpop), the
plaintext-login policy, STLS injection (CVE-2011-0411), SNI, session
resumption, certificate reload on SIGHUP, protocol floor, handshake
deadline, big messages byte for byte, and `postern -t` on bad key files.

Every server here has a "starttls" listener (srv.st_port) and an
"implicit" one (srv.im_port), both on 127.0.0.1, and
plaintext_auth_networks = ["127.0.0.1/32"], so 127.0.0.2 is a "remote"
client that must use TLS to log in."""

import atexit
import hashlib
import os
import poplib
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import warnings

import postern_harness as h
from postern_harness import PosternTest, User

PW = "Tls-pw-42"
SNI_NAME = "pop.example.test"

MESSAGES = [
    b"From: a@example.org\nTo: alice@example.org\nSubject: plain\n\n"
    b"Hello over TLS.\n",
    b"From: a@example.org\nSubject: dots\n\n.leading dot\n..two\n.\n"
    b"after lone dot\n",
    b"From: a@example.org\r\nSubject: crlf\r\n\r\nCRLF body\r\nline\r\n",
    b"From: a@example.org\nSubject: no final newline\n\nlast line",
    "From: a@example.org\nSubject: 8bit\nContent-Type: text/plain; "
    "charset=utf-8\n\ngrüße ça va 日本\n".encode("utf-8"),
    b"From: a@example.org\nSubject: medium\n\n"
    + b"".join(b"line %06d " % i + b"x" * 60 + b"\n" for i in range(3000)),
]
WIRE = [h.to_wire(m) for m in MESSAGES]
TOTAL = sum(len(w) for w in WIRE)


def _big_message():
    """About 5 MB, with lines that need dot-stuffing sprinkled in."""
    parts = [b"From: big@example.org\nSubject: five megabytes\n\n"]
    size = len(parts[0])
    i = 0
    while size < 5 * 1024 * 1024:
        if i % 997 == 0:
            line = b".dot line %d\n" % i
        elif i % 1009 == 0:
            line = b".\n"
        else:
            line = b"%08d " % i + bytes([65 + i % 26]) * 70 + b"\n"
        parts.append(line)
        size += len(line)
        i += 1
    return b"".join(parts)


BIG = _big_message()

# ---- certificates --------------------------------------------------------

_certdir = None
_certs = {}


def _cleanup_certs():
    if _certdir and not h.KEEP:
        shutil.rmtree(_certdir, ignore_errors=True)


atexit.register(_cleanup_certs)


def cert(name):
    """(certificate path, key path) of a self-signed pair made once per
    run: "main" and "new" for CN=localhost with IP:127.0.0.1, "sni" for
    pop.example.test."""
    global _certdir
    if name in _certs:
        return _certs[name]
    if _certdir is None:
        _certdir = tempfile.mkdtemp(prefix="postern-it-certs-")
    crt = os.path.join(_certdir, name + ".crt")
    key = os.path.join(_certdir, name + ".key")
    if name == "sni":
        subj, san = "/CN=" + SNI_NAME, "subjectAltName=DNS:" + SNI_NAME
    else:
        subj = "/CN=localhost"
        san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-days", "2", "-subj", subj, "-addext",
                        san, "-keyout", key, "-out", crt],
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl req failed: %s" % p.stderr.decode())
    _certs[name] = (crt, key)
    return crt, key


def der_of(crt_path):
    with open(crt_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def md5_colons(crt_path):
    """fetchmail's fingerprint format: MD5 of the DER, upper-case hex,
    colon-separated."""
    d = hashlib.md5(der_of(crt_path)).hexdigest().upper()
    return ":".join(d[i:i + 2] for i in range(0, len(d), 2))


def client_ctx(cafile, **kw):
    ctx = ssl.create_default_context(cafile=cafile)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def need(tool):
    path = shutil.which(tool)
    if path is None:
        raise AssertionError("%s is not installed (scripts/deps installs "
                             "openssl, curl, fetchmail and mpop)" % tool)
    return path


def lf_form(data):
    """What a client that strips CRs hands its MDA."""
    return h.to_wire(data).replace(b"\r\n", b"\n")


def strip_received(data):
    m = re.match(rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*", data)
    return data[m.end():] if m else data


# ---- servers -------------------------------------------------------------

def make_tls_server(factory, users, server=None, tls=None, sni=False,
                    start=True):
    """A server with a starttls and an implicit listener and a tls group
    naming copies (in the server's tree, owned like the tree) of the
    "main" certificate; sni adds the pop.example.test certificate. tls:
    more settings of the tls group. factory: PosternTest.server or
    class_server."""
    st = h.free_port()
    im = h.free_port()
    while im == st:
        im = h.free_port()
    listen = [
        {"name": "pop3", "address": "127.0.0.1", "port": st,
         "tls": "starttls"},
        {"name": "pop3s", "address": "127.0.0.1", "port": im,
         "tls": "implicit"},
    ]
    opts = {"plaintext_auth_networks": ["127.0.0.1/32"]}
    opts.update(server or {})
    srv = factory(users, listen=listen, server=opts, start=False)
    srv.port = st  # the harness's own port is not listened on
    srv.st_port, srv.im_port = st, im
    d = srv.path("tls")
    os.makedirs(d)
    os.chmod(d, 0o755)
    srv.cert = os.path.join(d, "cert.pem")
    srv.key = os.path.join(d, "key.pem")
    shutil.copy(cert("main")[0], srv.cert)
    shutil.copy(cert("main")[1], srv.key)
    os.chmod(srv.key, 0o600)
    lines = ["tls = {",
             "  certificate = %s;" % h.conf_value(srv.cert),
             "  key = %s;" % h.conf_value(srv.key)]
    for k, v in (tls or {}).items():
        lines.append("  %s = %s;" % (k, h.conf_value(v)))
    if sni:
        srv.sni_cert = os.path.join(d, "sni-cert.pem")
        srv.sni_key = os.path.join(d, "sni-key.pem")
        shutil.copy(cert("sni")[0], srv.sni_cert)
        shutil.copy(cert("sni")[1], srv.sni_key)
        os.chmod(srv.sni_key, 0o600)
        lines.append("  sni = %s;" % h.conf_group_list([
            {"name": SNI_NAME, "certificate": srv.sni_cert,
             "key": srv.sni_key}]))
    lines.append("};")
    srv.extra_conf = "\n".join(lines)
    srv.write_conf()
    if srv.drop_user:
        h.chown_tree(d)
    if start:
        srv.start()
    return srv


class TlsPop3(h.Pop3):
    """The harness's byte-exact client over implicit TLS."""

    def __init__(self, port, ctx, host="127.0.0.1", source=None,
                 timeout=None, server_hostname="127.0.0.1", session=None):
        self.timeout = timeout or h.TIMEOUT
        raw = socket.create_connection(
            (host, port), self.timeout,
            source_address=(source, 0) if source else None)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname,
                                        session=session)
        except BaseException:
            raw.close()
            raise
        self.buf = bytearray()
        self.pos = 0
        self.eof = False
        self.greeting = self.line()


def stls(test, c, ctx, server_hostname="127.0.0.1"):
    """STLS on a harness client, then TLS on the same socket."""
    r = c.cmd("STLS")
    test.assertEqual(r, "+OK begin TLS negotiation")
    test.assertEqual(c.pos, len(c.buf),
                     "bytes after the STLS answer before the handshake: %r"
                     % bytes(c.buf[c.pos:]))
    c.sock.settimeout(c.timeout)
    c.sock = ctx.wrap_socket(c.sock, server_hostname=server_hostname)
    return c.sock


def capa(c):
    st, lines = c.multi("CAPA")
    if not st.startswith("+OK"):
        raise AssertionError("CAPA: %r" % st)
    return lines


def run(argv, stdin=b"", timeout=None, env=None):
    return subprocess.run(argv, input=stdin, capture_output=True,
                          timeout=timeout or 6 * h.TIMEOUT, env=env)


def s_client(*args, stdin=b"", timeout=None):
    """openssl s_client; returns (rc, stdout text, stderr text)."""
    p = run([need("openssl"), "s_client"] + list(args), stdin=stdin,
            timeout=timeout)
    return (p.returncode, p.stdout.decode("latin-1"),
            p.stderr.decode("latin-1"))


def served_cert(port, servername=None, starttls=False):
    """DER of the certificate the server presents (via s_client)."""
    args = ["-connect", "127.0.0.1:%d" % port]
    if starttls:
        args += ["-starttls", "pop3"]
    if servername is None:
        args.append("-noservername")
    else:
        args += ["-servername", servername]
    rc, out, err = s_client(*args, stdin=b"QUIT\r\n")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                  out, re.S)
    if m is None:
        raise AssertionError("no certificate from s_client (rc %d):\n%s\n%s"
                             % (rc, out, err))
    return ssl.PEM_cert_to_DER_cert(m.group(0))


def login_lines(srv, user, start=0):
    return re.findall(r"login: user=%s method=(?:USER|PLAIN) tls=(\S+) peer=(\S+) "
                      r"pid=(\d+)" % re.escape(user), srv.log()[start:])


# ==========================================================================


class TlsTest(PosternTest):
    USERS = ("ossl", "poplib", "poplibssl", "curl", "fm", "fmstls", "mp",
             "mpstls", "policy", "inject", "sni", "resume", "resume13a",
             "resume13b", "resume12a", "resume12b", "misc")

    @classmethod
    def setUpClass(cls):
        users = [User(n, PW, MESSAGES) for n in cls.USERS]
        users.append(User("big", PW, [BIG]))
        cls.srv = make_tls_server(cls.class_server, users, sni=True)
        cls.cafile = cert("main")[0]

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="postern-tls-client-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.ctx = client_ctx(self.cafile)

    def assertLoggedIn(self, user, tls, peer="127.0.0.1", start=0,
                       count=1):
        """Waits for count login lines of user after start; all of them
        must show tls and peer."""
        self.srv.wait_log(r"login: user=%s " % re.escape(user),
                          start=start, count=count)
        got = login_lines(self.srv, user, start)
        self.assertEqual([(t, p) for t, p, _ in got], [(tls, peer)] * count,
                         self.srv.log_tail(20))

    # ---- 1. openssl s_client ------------------------------------------
    def _s_client_session(self, *args):
        start = self.srv.log_size()
        cmds = ("USER ossl\r\nPASS %s\r\nSTAT\r\nQUIT\r\n" % PW).encode()
        rc, out, err = s_client("-quiet", "-CAfile", self.cafile,
                                "-verify_return_error", "-verify_ip",
                                "127.0.0.1", *args, stdin=cmds)
        self.assertEqual(rc, 0, out + err)
        self.assertLoggedIn("ossl", "TLSv1.3", start=start)
        return out.split("\r\n")

    def test_openssl_s_client_starttls(self):
        lines = self._s_client_session(
            "-starttls", "pop3", "-connect", "127.0.0.1:%d" % self.srv.st_port)
        # s_client ate the greeting and the STLS answer
        self.assertEqual(lines, [
            "+OK send PASS",
            "+OK mailbox ready, %d messages (%d octets)"
            % (len(MESSAGES), TOTAL),
            "+OK %d %d" % (len(MESSAGES), TOTAL),
            "+OK bye, 0 messages deleted", ""])

    def test_openssl_s_client_implicit(self):
        lines = self._s_client_session(
            "-connect", "127.0.0.1:%d" % self.srv.im_port)
        self.assertEqual(lines, [
            h.GREETING, "+OK send PASS",
            "+OK mailbox ready, %d messages (%d octets)"
            % (len(MESSAGES), TOTAL),
            "+OK %d %d" % (len(MESSAGES), TOTAL),
            "+OK bye, 0 messages deleted", ""])

    def test_openssl_s_client_rejects_other_ca(self):
        # the verification in the tests above is real: a client trusting
        # another certificate fails
        rc, out, err = s_client("-quiet", "-CAfile", cert("sni")[0],
                                "-verify_return_error", "-connect",
                                "127.0.0.1:%d" % self.srv.im_port,
                                stdin=b"QUIT\r\n")
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn(h.GREETING, out)
        self.assertIn("verify", err.lower())

    # ---- 2. poplib ----------------------------------------------------
    def _poplib_check(self, p, user):
        self.assertEqual(p.user(user), b"+OK send PASS")
        self.assertEqual(p.pass_(PW), b"+OK mailbox ready, %d messages "
                         b"(%d octets)" % (len(MESSAGES), TOTAL))
        resp, listing, _ = p.list()
        self.assertEqual(resp, b"+OK %d messages (%d octets)"
                         % (len(MESSAGES), TOTAL))
        self.assertEqual(listing, [b"%d %d" % (i + 1, len(w))
                                   for i, w in enumerate(WIRE)])
        for i, w in enumerate(WIRE):
            resp, lines, octets = p.retr(i + 1)
            self.assertEqual(resp, b"+OK %d octets" % len(w))
            got = b"".join(l + b"\r\n" for l in lines)
            self.assertEqual(got, w, "message %d" % (i + 1))
        self.assertEqual(p.quit(), b"+OK bye, 0 messages deleted")

    def test_poplib_stls(self):
        start = self.srv.log_size()
        p = poplib.POP3("127.0.0.1", self.srv.st_port, timeout=h.TIMEOUT)
        try:
            self.assertEqual(p.getwelcome(), h.GREETING.encode())
            caps = p.capa()
            self.assertIn("STLS", caps)
            p.stls(self.ctx)
            self.assertEqual(p.sock.version(), "TLSv1.3")
            caps = p.capa()
            self.assertIn("USER", caps)
            self.assertNotIn("STLS", caps)
            self._poplib_check(p, "poplib")
        finally:
            p.close()
        self.assertLoggedIn("poplib", "TLSv1.3", start=start)

    def test_poplib_pop3_ssl(self):
        start = self.srv.log_size()
        ctx = client_ctx(self.cafile)
        ctx.set_alpn_protocols(["pop3"])
        p = poplib.POP3_SSL("127.0.0.1", self.srv.im_port, context=ctx,
                            timeout=h.TIMEOUT)
        try:
            self.assertEqual(p.getwelcome(), h.GREETING.encode())
            self.assertEqual(p.sock.selected_alpn_protocol(), "pop3")
            self.assertEqual(p.sock.getpeercert(True), der_of(self.cafile))
            caps = p.capa()
            self.assertIn("USER", caps)
            self.assertNotIn("STLS", caps)
            self._poplib_check(p, "poplibssl")
        finally:
            p.close()
        self.assertLoggedIn("poplibssl", "TLSv1.3", start=start)

    def test_alpn_other_protocol_still_pop3(self):
        ctx = client_ctx(self.cafile)
        ctx.set_alpn_protocols(["imap", "h2"])
        with TlsPop3(self.srv.im_port, ctx) as c:
            self.assertEqual(c.greeting, h.GREETING)
            self.assertIsNone(c.sock.selected_alpn_protocol())
            self.assertEqual(c.cmd("QUIT"), "+OK bye")

    # ---- 3. curl ------------------------------------------------------
    def curl(self, *args):
        p = run([need("curl"), "-s", "-S", "--max-time",
                 str(int(30 * h.SLOW)), "--cacert", self.cafile]
                + list(args))
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p.stdout

    def test_curl_pop3s(self):
        start = self.srv.log_size()
        for n in (1, 2, 6):
            got = self.curl("pop3s://curl:%s@127.0.0.1:%d/%d"
                            % (PW, self.srv.im_port, n))
            self.assertEqual(got, WIRE[n - 1], "message %d" % n)
        self.assertLoggedIn("curl", "TLSv1.3", start=start, count=3)

    def test_curl_stls(self):
        start = self.srv.log_size()
        for n in (1, 2, 6):
            got = self.curl("--ssl-reqd", "pop3://curl:%s@127.0.0.1:%d/%d"
                            % (PW, self.srv.st_port, n))
            self.assertEqual(got, WIRE[n - 1], "message %d" % n)
        listing = self.curl("--ssl-reqd", "pop3://curl:%s@127.0.0.1:%d/"
                            % (PW, self.srv.st_port))
        self.assertEqual(listing, b"".join(b"%d %d\r\n" % (i + 1, len(w))
                                           for i, w in enumerate(WIRE)))
        self.assertLoggedIn("curl", "TLSv1.3", start=start, count=4)

    # ---- 4. fetchmail -------------------------------------------------
    def fetchmail(self, user, port, ssl_opts, tag):
        out = os.path.join(self.home, "out-" + tag)
        os.makedirs(out)
        mda = os.path.join(self.home, "mda.sh")
        with open(mda, "w") as f:
            f.write('#!/bin/sh\ncat > "$1/msg.$$"\n')
        os.chmod(mda, 0o755)
        me = pwd.getpwuid(os.getuid()).pw_name
        rc = os.path.join(self.home, "fetchmailrc-" + tag)
        with open(rc, "w") as f:
            f.write('set no bouncemail\n'
                    'poll 127.0.0.1 with proto POP3 port %d auth password '
                    'timeout 30\n'
                    '  user "%s" there with password "%s" is "%s" here\n'
                    '  options keep fetchall norewrite %s\n'
                    '  mda "%s %s"\n'
                    % (port, user, PW, me, ssl_opts, mda, out))
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=self.home, FETCHMAILHOME=self.home)
        # its own lock file: root's default, /var/run/fetchmail.pid, is
        # shared with every other fetchmail on the machine
        p = run([need("fetchmail"), "-f", rc, "--nodetach", "--nosyslog",
                 "-v", "--idfile", os.path.join(self.home, "idfile-" + tag),
                 "--pidfile", os.path.join(self.home, "fetchmail.pid")],
                env=env)
        got = []
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), "rb") as fh:
                got.append(strip_received(fh.read()))
        return p.returncode, got, (p.stdout + p.stderr).decode("latin-1")

    def fetchmail_ssl_opts(self):
        # fetchmail matches the certificate's names against the poll name
        # only (no IP SANs): sslcommonname names it; the chain is checked
        # against the certificate itself and its fingerprint pinned.
        return ('sslcertck sslcertfile "%s" sslcommonname "localhost" '
                'sslfingerprint "%s"' % (self.cafile, md5_colons(self.cafile)))

    def test_fetchmail_implicit(self):
        start = self.srv.log_size()
        rc, got, log = self.fetchmail(
            "fm", self.srv.im_port,
            "ssl sslproto \"tls1.2+\" " + self.fetchmail_ssl_opts(), "ssl")
        self.assertEqual(rc, 0, log)
        self.assertIn("fingerprints match", log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        self.assertEqual(len(got), len(MESSAGES))
        self.assertLoggedIn("fm", "TLSv1.3", start=start)

    def test_fetchmail_stls(self):
        start = self.srv.log_size()
        rc, got, log = self.fetchmail(
            "fmstls", self.srv.st_port,
            "sslproto \"tls1.2+\" " + self.fetchmail_ssl_opts(), "stls")
        self.assertEqual(rc, 0, log)
        self.assertIn("POP3> STLS", log)
        self.assertIn("upgrade to TLS succeeded", log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        self.assertEqual(len(got), len(MESSAGES))
        self.assertLoggedIn("fmstls", "TLSv1.3", start=start)

    # ---- 5. mpop ------------------------------------------------------
    def mpop(self, user, port, starttls, tag, trust=None):
        md = os.path.join(self.home, "md-" + tag)
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, d))
        p = run([need("mpop"), "--host=127.0.0.1", "--port=%d" % port,
                 "--tls=on", "--tls-starttls=" + ("on" if starttls else "off"),
                 "--tls-trust-file=" + (trust or self.cafile),
                 "--auth=user", "--user=" + user,
                 "--passwordeval=echo " + PW, "--keep=on",
                 "--uidls-file=" + os.path.join(self.home, "uidls-" + tag),
                 "--delivery=maildir," + md, "--received-header=off",
                 "--timeout=30"],
                env=dict(os.environ, HOME=self.home))
        got = []
        for d in ("new", "cur"):
            for name in sorted(os.listdir(os.path.join(md, d))):
                with open(os.path.join(md, d, name), "rb") as fh:
                    got.append(fh.read())
        return p.returncode, got, (p.stdout + p.stderr).decode("latin-1")

    def test_mpop_implicit(self):
        start = self.srv.log_size()
        rc, got, log = self.mpop("mp", self.srv.im_port, False, "ssl")
        self.assertEqual(rc, 0, log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        self.assertEqual(len(got), len(MESSAGES))
        self.assertLoggedIn("mp", "TLSv1.3", start=start)

    def test_mpop_stls(self):
        start = self.srv.log_size()
        rc, got, log = self.mpop("mpstls", self.srv.st_port, True, "stls")
        self.assertEqual(rc, 0, log)
        self.assertCountEqual(got, [lf_form(m) for m in MESSAGES], log)
        self.assertEqual(len(got), len(MESSAGES))
        self.assertLoggedIn("mpstls", "TLSv1.3", start=start)

    def test_mpop_untrusted_certificate_fails(self):
        start = self.srv.log_size()
        rc, got, log = self.mpop("mp", self.srv.im_port, False, "bad",
                                 trust=cert("sni")[0])
        self.assertNotEqual(rc, 0, log)
        self.assertEqual(got, [])
        self.assertEqual(login_lines(self.srv, "mp", start), [])

    # ---- 6. old protocols ---------------------------------------------
    def test_tls11_refused_openssl(self):
        for port, extra in ((self.srv.im_port, []),
                            (self.srv.st_port, ["-starttls", "pop3"])):
            start = self.srv.log_size()
            rc, out, err = s_client(
                "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-connect",
                "127.0.0.1:%d" % port, *extra, stdin=b"QUIT\r\n")
            self.assertNotEqual(rc, 0, out + err)
            self.assertNotIn(h.GREETING, out)
            self.assertIn("alert protocol version", err)
            self.srv.wait_log(r"tls: peer=127\.0\.0\.1: handshake: "
                              r".*unsupported protocol", start=start)
            # the same client allowed TLS 1.2 gets in: the refusal above
            # is the server's floor, not the client's settings
            rc, out, err = s_client(
                "-ign_eof", "-tls1_2", "-cipher", "DEFAULT@SECLEVEL=0",
                "-CAfile", self.cafile, "-verify_return_error", "-connect",
                "127.0.0.1:%d" % port, *extra, stdin=b"QUIT\r\n")
            self.assertEqual(rc, 0, out + err)
            self.assertIn("Protocol  : TLSv1.2", out)
            self.assertIn("+OK bye", out)

    def test_tls11_refused_python(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.cafile)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        start = self.srv.log_size()
        with self.assertRaises(ssl.SSLError) as cm:
            TlsPop3(self.srv.im_port, ctx).close()
        self.assertIn("PROTOCOL_VERSION", str(cm.exception))
        self.srv.wait_log(r"tls: peer=127\.0\.0\.1: handshake: "
                          r".*unsupported protocol", start=start)
        # over STLS too
        start = self.srv.log_size()
        c = self.client(self.srv, port=self.srv.st_port)
        with self.assertRaises(ssl.SSLError):
            stls(self, c, ctx)
        self.srv.wait_log(r"tls: peer=127\.0\.0\.1: handshake: "
                          r".*unsupported protocol", start=start)
        # and TLS 1.2 exactly works
        ctx12 = client_ctx(self.cafile,
                           maximum_version=ssl.TLSVersion.TLSv1_2)
        with TlsPop3(self.srv.im_port, ctx12) as c2:
            self.assertEqual(c2.sock.version(), "TLSv1.2")
            self.assertEqual(c2.greeting, h.GREETING)
            self.assertEqual(c2.login("misc", PW)[:17], "+OK mailbox ready")
            self.assertEqual(c2.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.srv.wait_log(r"login: user=misc method=USER tls=TLSv1\.2 "
                          r"peer=127\.0\.0\.1 ")

    # ---- 7. STLS injection --------------------------------------------
    def test_stls_pipelined_command_discarded(self):
        c = self.client(self.srv, port=self.srv.st_port)
        self.assertEqual(c.greeting, h.GREETING)
        c.send(b"STLS\r\nCAPA\r\n")  # one write, one segment
        self.assertEqual(c.line(), "+OK begin TLS negotiation")
        # Nothing else in plain text: no CAPA answer, ever.
        leftover = bytes(c.buf[c.pos:])
        c.sock.settimeout(1.0)
        try:
            more = c.sock.recv(65536)
        except socket.timeout:
            more = b""
        plain = leftover + more
        self.assertEqual(plain, b"", "plain text after +OK to STLS: %r"
                         % plain)
        c.buf = bytearray()
        c.pos = 0
        c.sock.settimeout(c.timeout)
        c.sock = self.ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
        # Inside TLS the first answer is to our first command (NOOP is
        # -ERR before login); a CAPA taken from the plain-text buffer
        # would answer "+OK capability list follows" first.
        self.assertEqual(c.cmd("NOOP"), h.ERR_STATE)
        lines = capa(c)
        self.assertIn("USER", lines)
        self.assertNotIn("STLS", lines)
        self.assertEqual(c.login("inject", PW)[:17], "+OK mailbox ready")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    def test_stls_pipelined_user_discarded(self):
        # USER pipelined behind STLS is not carried into TLS either
        c = self.client(self.srv, port=self.srv.st_port)
        c.send(b"STLS\r\nUSER inject\r\n")
        self.assertEqual(c.line(), "+OK begin TLS negotiation")
        c.sock = self.ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
        self.assertEqual(c.cmd("PASS " + PW), h.ERR_USER_FIRST)
        self.assertEqual(c.cmd("QUIT"), "+OK bye")

    def test_user_before_stls_forgotten(self):
        c = self.client(self.srv, port=self.srv.st_port)
        self.assertEqual(c.cmd("USER inject"), "+OK send PASS")
        stls(self, c, self.ctx)
        self.assertEqual(c.cmd("PASS " + PW), h.ERR_USER_FIRST)
        self.assertEqual(c.cmd("QUIT"), "+OK bye")

    # ---- 8. plaintext policy ------------------------------------------
    def test_remote_plaintext_refused_then_stls(self):
        start = self.srv.log_size()
        c = self.client(self.srv, port=self.srv.st_port, source="127.0.0.2")
        self.assertEqual(c.greeting, h.GREETING)
        lines = capa(c)
        self.assertNotIn("USER", lines)
        self.assertIn("STLS", lines)
        self.assertEqual(c.cmd("USER policy"), h.ERR_TLS_REQUIRED)
        self.assertEqual(c.cmd("PASS " + PW), h.ERR_TLS_REQUIRED)
        stls(self, c, self.ctx)
        self.assertEqual(c.sock.version(), "TLSv1.3")
        lines = capa(c)
        self.assertIn("USER", lines)
        self.assertNotIn("STLS", lines)
        self.assertEqual(c.cmd("STLS"), "-ERR already in TLS")
        self.assertEqual(c.cmd("USER policy"), "+OK send PASS")
        self.assertEqual(c.cmd("PASS " + PW), "+OK mailbox ready, %d "
                         "messages (%d octets)" % (len(MESSAGES), TOTAL))
        st, data = c.retr(2)
        self.assertEqual(data, WIRE[1])
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertLoggedIn("policy", "TLSv1.3", peer="127.0.0.2",
                            start=start)

    def test_remote_implicit_login(self):
        start = self.srv.log_size()
        with TlsPop3(self.srv.im_port, self.ctx, source="127.0.0.2") as c:
            lines = capa(c)
            self.assertIn("USER", lines)
            self.assertNotIn("STLS", lines)
            self.assertEqual(c.cmd("STLS"), h.ERR_STATE)
            self.assertEqual(c.login("policy", PW)[:17], "+OK mailbox ready")
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertLoggedIn("policy", "TLSv1.3", peer="127.0.0.2",
                            start=start)

    def test_local_plaintext_allowed(self):
        start = self.srv.log_size()
        c = self.client(self.srv, port=self.srv.st_port)
        lines = capa(c)
        self.assertIn("USER", lines)
        self.assertIn("STLS", lines)
        self.assertEqual(c.login("policy", PW)[:17], "+OK mailbox ready")
        self.assertEqual(c.cmd("STLS"), h.ERR_STATE)  # not in TRANSACTION
        lines = capa(c)
        self.assertNotIn("STLS", lines)
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertLoggedIn("policy", "no", start=start)

    # ---- 9. SNI -------------------------------------------------------
    def test_sni_picks_certificate(self):
        main, sni = der_of(self.srv.cert), der_of(self.srv.sni_cert)
        self.assertNotEqual(main, sni)
        for port, starttls in ((self.srv.im_port, False),
                               (self.srv.st_port, True)):
            what = "starttls" if starttls else "implicit"
            self.assertEqual(served_cert(port, SNI_NAME, starttls), sni,
                             what)
            self.assertEqual(served_cert(port, None, starttls), main, what)
            self.assertEqual(served_cert(port, "POP.Example.TEST",
                                         starttls), sni, what)
            self.assertEqual(served_cert(port, "other.example.test",
                                         starttls), main, what)
        # s_client verifying the name against the SNI certificate
        cmds = ("USER sni\r\nPASS %s\r\nQUIT\r\n" % PW).encode()
        rc, out, err = s_client(
            "-quiet", "-connect", "127.0.0.1:%d" % self.srv.im_port,
            "-servername", SNI_NAME, "-CAfile", self.srv.sni_cert,
            "-verify_return_error", "-verify_hostname", SNI_NAME,
            stdin=cmds)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("depth=0 CN = " + SNI_NAME, err)
        self.assertIn("+OK mailbox ready", out)
        # and Python over STLS
        ctx = client_ctx(self.srv.sni_cert)
        c = self.client(self.srv, port=self.srv.st_port)
        stls(self, c, ctx, server_hostname=SNI_NAME)
        self.assertEqual(c.sock.getpeercert(True), sni)
        self.assertEqual(c.login("sni", PW)[:17], "+OK mailbox ready")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    # ---- 10. resumption -----------------------------------------------
    def _resume_s_client(self, version_args):
        sess = os.path.join(self.home, "sess")
        cmds = ("USER resume\r\nPASS %s\r\nQUIT\r\n" % PW).encode()
        base = ["-ign_eof", "-CAfile", self.cafile, "-verify_return_error",
                "-connect", "127.0.0.1:%d" % self.srv.im_port] + version_args
        rc, out, err = s_client(*base, "-sess_out", sess, stdin=cmds)
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"(?m)^New, TLSv1\.[23]")
        self.assertIn("+OK bye, 0 messages deleted", out)
        self.assertGreater(os.path.getsize(sess), 0)
        rc, out, err = s_client(*base, "-sess_in", sess, stdin=cmds)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("+OK mailbox ready", out)
        self.assertIn("+OK bye, 0 messages deleted", out)
        return out

    def test_resumption_s_client_tls13(self):
        out = self._resume_s_client([])
        self.assertRegex(out, r"(?m)^Reused, TLSv1\.3,")

    def test_resumption_s_client_tls12(self):
        out = self._resume_s_client(["-tls1_2"])
        self.assertRegex(out, r"(?m)^Reused, TLSv1\.2,")

    def _resume_other_worker(self, ctx, version, tag):
        """A ticket from one worker resumes on another: the first
        session stays open (its worker busy) while the second resumes."""
        s0 = self.srv.log_size()
        c1 = TlsPop3(self.srv.im_port, ctx)
        self.addCleanup(c1.close)
        self.assertEqual(c1.sock.version(), version)
        self.assertFalse(c1.sock.session_reused)
        self.assertEqual(c1.login("resume" + tag + "a", PW)[:17],
                         "+OK mailbox ready")
        pid1 = self.srv.worker_pid_of_login("resume" + tag + "a", start=s0)
        sess = c1.sock.session
        self.assertIsNotNone(sess)
        self.assertTrue(sess.has_ticket)
        s0 = self.srv.log_size()
        c2 = TlsPop3(self.srv.im_port, ctx, session=sess)
        self.addCleanup(c2.close)
        self.assertEqual(c2.greeting, h.GREETING)
        self.assertTrue(c2.sock.session_reused,
                        "the second connection did a full handshake")
        self.assertEqual(c2.login("resume" + tag + "b", PW)[:17],
                         "+OK mailbox ready")
        pid2 = self.srv.worker_pid_of_login("resume" + tag + "b", start=s0)
        self.assertNotEqual(pid1, pid2)
        for c in (c2, c1):
            self.assertEqual(c.cmd("STAT"),
                             "+OK %d %d" % (len(MESSAGES), TOTAL))
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    def test_resumption_across_workers_tls13(self):
        self._resume_other_worker(client_ctx(self.cafile), "TLSv1.3", "13")

    def test_resumption_across_workers_tls12(self):
        self._resume_other_worker(
            client_ctx(self.cafile, maximum_version=ssl.TLSVersion.TLSv1_2),
            "TLSv1.2", "12")

    # ---- 12. big message ----------------------------------------------
    def _big(self, c):
        size = len(h.to_wire(BIG))
        self.assertEqual(c.login("big", PW),
                         "+OK mailbox ready, 1 messages (%d octets)" % size)
        self.assertEqual(c.cmd("STAT"), "+OK 1 %d" % size)
        self.assertEqual(c.cmd("LIST 1"), "+OK 1 %d" % size)
        st, data = c.retr(1, timeout=6 * h.TIMEOUT)
        self.assertEqual(st, "+OK %d octets" % size)
        self.assertEqual(len(data), size)
        self.assertTrue(data == h.to_wire(BIG), "5 MB message differs")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    def test_big_message_implicit(self):
        with TlsPop3(self.srv.im_port, self.ctx) as c:
            self._big(c)

    def test_big_message_stls(self):
        c = self.client(self.srv, port=self.srv.st_port, source="127.0.0.2")
        stls(self, c, self.ctx)
        self._big(c)


class TlsOwnServerTest(PosternTest):
    """Tests that reload, time out or want other tls settings."""

    # ---- 11. SIGHUP ---------------------------------------------------
    def test_sighup_swaps_certificate(self):
        srv = make_tls_server(self.server, [User("alice", PW, MESSAGES),
                                            User("bob", PW, MESSAGES)])
        old_der, new_der = der_of(cert("main")[0]), der_of(cert("new")[0])
        self.assertNotEqual(old_der, new_der)
        ctx_old = client_ctx(cert("main")[0])
        ctx_new = client_ctx(cert("new")[0])
        home = tempfile.mkdtemp(prefix="postern-tls-sess-")
        self.addCleanup(shutil.rmtree, home, True)
        sess = os.path.join(home, "sess")

        old = TlsPop3(srv.im_port, ctx_old)
        self.addCleanup(old.close)
        self.assertEqual(old.login("alice", PW)[:17], "+OK mailbox ready")
        old_st = self.client(srv, port=srv.st_port)
        stls(self, old_st, ctx_old)
        self.assertEqual(old_st.login("bob", PW)[:17], "+OK mailbox ready")
        rc, out, err = s_client("-ign_eof", "-CAfile", cert("main")[0],
                                "-connect", "127.0.0.1:%d" % srv.im_port,
                                "-sess_out", sess, stdin=b"QUIT\r\n")
        self.assertEqual(rc, 0, out + err)
        rc, out, err = s_client("-ign_eof", "-CAfile", cert("main")[0],
                                "-connect", "127.0.0.1:%d" % srv.im_port,
                                "-sess_in", sess, stdin=b"QUIT\r\n")
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"(?m)^Reused, TLSv1\.3")

        # the renewal: new files put in place by rename, as certbot does
        for src, dst in ((cert("new")[0], srv.cert),
                         (cert("new")[1], srv.key)):
            tmp = dst + ".new"
            shutil.copy(src, tmp)
            os.chmod(tmp, 0o600 if dst == srv.key else 0o644)
            if srv.drop_user:
                os.chown(tmp, h.NOBODY_UID, h.NOBODY_GID)
            os.rename(tmp, dst)
        start = srv.log_size()
        srv.signal(signal.SIGHUP)
        srv.wait_log(r"reload: done", start=start)

        for port, starttls in ((srv.im_port, False), (srv.st_port, True)):
            self.assertEqual(served_cert(port, None, starttls), new_der)
        self.assertEqual(ssl.DER_cert_to_PEM_cert(new_der).strip(),
                         ssl.get_server_certificate(
                             ("127.0.0.1", srv.im_port)).strip())
        with TlsPop3(srv.im_port, ctx_new) as c:
            self.assertEqual(c.sock.getpeercert(True), new_der)
            self.assertEqual(c.cmd("QUIT"), "+OK bye")
        # the old sessions keep working, still on the old certificate
        for c in (old, old_st):
            self.assertEqual(c.sock.getpeercert(True), old_der)
            self.assertEqual(c.cmd("STAT"),
                             "+OK %d %d" % (len(MESSAGES), TOTAL))
            st, data = c.retr(6)
            self.assertEqual(st, "+OK %d octets" % len(WIRE[5]))
            self.assertEqual(data, WIRE[5])
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        # new ticket keys: the old ticket is not accepted any more
        rc, out, err = s_client("-ign_eof", "-CAfile", cert("new")[0],
                                "-connect", "127.0.0.1:%d" % srv.im_port,
                                "-sess_in", sess, stdin=b"QUIT\r\n")
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"(?m)^New, TLSv1\.3")

        # a reload with a key that does not match keeps the new pair
        shutil.copy(cert("sni")[1], srv.key)
        start = srv.log_size()
        srv.signal(signal.SIGHUP)
        m = srv.wait_log(r"reload: .* has errors", start=start)
        log = srv.log()[start:m.end()]
        self.assertRegex(log, r"%s:\d+: tls key %s \(for certificate %s\)"
                         % (re.escape(srv.conf_path), re.escape(srv.key),
                            re.escape(srv.cert)))
        self.assertNotIn("reload: done", log)
        self.assertTrue(srv.alive())
        self.assertEqual(served_cert(srv.im_port), new_der)
        with TlsPop3(srv.im_port, ctx_new) as c:
            self.assertEqual(c.login("alice", PW)[:17], "+OK mailbox ready")
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    # ---- warm-up ------------------------------------------------------
    def test_warm_up_handshake_per_certificate(self):
        # The master shakes hands with itself once per certificate before
        # forking, so workers share what OpenSSL sets up on first use.
        srv = make_tls_server(self.server, [User("sni", PW, MESSAGES)],
                              server={"log_level": "debug"}, sni=True)
        srv.wait_log(r"tls: warm-up handshakes done for 2 of 2 "
                     r"certificates")
        with TlsPop3(srv.im_port, client_ctx(cert("main")[0])) as c:
            self.assertEqual(c.login("sni", PW)[:17], "+OK mailbox ready")
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    # ---- min_protocol and handshake deadline --------------------------
    def test_min_protocol_tls13(self):
        srv = make_tls_server(self.server, [User("alice", PW, MESSAGES)],
                              tls={"min_protocol": "TLSv1.3"})
        ctx12 = client_ctx(cert("main")[0],
                           maximum_version=ssl.TLSVersion.TLSv1_2)
        start = srv.log_size()
        with self.assertRaises(ssl.SSLError):
            TlsPop3(srv.im_port, ctx12).close()
        srv.wait_log(r"tls: peer=127\.0\.0\.1: handshake: .*unsupported "
                     r"protocol", start=start)
        with TlsPop3(srv.im_port, client_ctx(cert("main")[0])) as c:
            self.assertEqual(c.sock.version(), "TLSv1.3")
            self.assertEqual(c.login("alice", PW)[:17], "+OK mailbox ready")
            self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")

    def test_handshake_deadline(self):
        srv = make_tls_server(self.server, [User("alice", PW, MESSAGES)],
                              tls={"handshake_timeout": 2})
        # a real ClientHello, sent one byte every 0.2 s: the whole
        # handshake has one 2 s deadline, however the client dribbles
        ctx = client_ctx(cert("main")[0])
        outgoing = ssl.MemoryBIO()
        obj = ctx.wrap_bio(ssl.MemoryBIO(), outgoing,
                           server_hostname="127.0.0.1")
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outgoing.read()
        self.assertGreater(len(hello), 100)
        c = self.client(srv, port=srv.st_port)
        self.assertEqual(c.cmd("STLS"), "+OK begin TLS negotiation")
        start = srv.log_size()
        t0 = time.monotonic()
        closed_after = None
        c.sock.settimeout(0.2)
        for b in hello:
            if time.monotonic() - t0 > 10 * h.SLOW:
                break
            try:
                c.sock.send(bytes([b]))
                got = c.sock.recv(4096)
                if got == b"":
                    closed_after = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - t0
                break
        self.assertIsNotNone(closed_after, "the server never closed")
        self.assertGreater(closed_after, 1.5)
        self.assertLess(closed_after, 2 + 2 * h.SLOW)
        srv.wait_log(r"tls: peer=127\.0\.0\.1: handshake: timeout",
                     start=start)

    # ---- 13. postern -t -----------------------------------------------
    def check(self, srv):
        p = run([h.BIN, "-t", "-c", srv.conf_path])
        out = (p.stdout + p.stderr).decode("latin-1")
        self.assertIsNone(h.SANITIZER_RE.search(out), out)
        return p.returncode, out

    def conf_line(self, srv, prefix):
        for i, line in enumerate(srv.conf_text().split("\n")):
            if line.lstrip().startswith(prefix):
                return i + 1
        raise AssertionError("no %r line in the config" % prefix)

    def test_check_missing_key(self):
        srv = make_tls_server(self.server, [User("alice", PW)], start=False)
        rc, out = self.check(srv)
        self.assertEqual(rc, 0, out)
        os.unlink(srv.key)
        rc, out = self.check(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d: tls key %s: No such file or directory"
                      % (srv.conf_path, self.conf_line(srv, "tls = {"),
                         srv.key), out)

    def test_check_missing_certificate(self):
        srv = make_tls_server(self.server, [User("alice", PW)], start=False)
        os.unlink(srv.cert)
        rc, out = self.check(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d: tls certificate %s: No such file or directory"
                      % (srv.conf_path, self.conf_line(srv, "tls = {"),
                         srv.cert), out)

    def test_check_mismatched_key(self):
        srv = make_tls_server(self.server, [User("alice", PW)], start=False)
        shutil.copy(cert("new")[1], srv.key)
        rc, out = self.check(srv)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"%s:%d: tls key %s \(for certificate %s\): "
                         r".*key values mismatch"
                         % (re.escape(srv.conf_path),
                            self.conf_line(srv, "tls = {"),
                            re.escape(srv.key), re.escape(srv.cert)))

    def test_check_sni_missing_key(self):
        srv = make_tls_server(self.server, [User("alice", PW)], sni=True,
                              start=False)
        os.unlink(srv.sni_key)
        rc, out = self.check(srv)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d: tls key %s: No such file or directory"
                      % (srv.conf_path, self.conf_line(srv, "sni = "),
                         srv.sni_key), out)

    def test_start_refused_with_mismatched_key(self):
        srv = make_tls_server(self.server, [User("alice", PW)], start=False)
        shutil.copy(cert("new")[1], srv.key)
        if srv.drop_user:
            os.chown(srv.key, h.NOBODY_UID, h.NOBODY_GID)
        p = run([h.BIN, "-c", srv.conf_path], timeout=6 * h.TIMEOUT)
        out = (p.stdout + p.stderr).decode("latin-1")
        self.assertIsNone(h.SANITIZER_RE.search(out), out)
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("tls key %s (for certificate %s)"
                      % (srv.key, srv.cert), out)
        self.assertFalse(h.listening(srv.im_port))


if __name__ == "__main__":
    h.main()
