#!/usr/bin/env python3
"""The runner of scripts/bench: postern side by side with Dovecot and popa3d.

scripts/bench builds postern and bench/popload, installs the peers and then
runs this file inside a private mount namespace (unshare -m). Everything it
needs on the machine -- the bench users in /etc/passwd, /etc/shadow and
/etc/group, popa3d's PAM file, the /var/mail spool and popa3d's chroot in
/var/lib -- is bind-mounted over the real files inside that namespace only,
so the machine's own files are never written and vanish with the namespace.
Mail, configurations, logs and results live in a temporary directory.

Each server runs pinned to CPU 0 in its own cgroup (CPU time is read from
the cgroup: the whole process tree, exited children included); popload and
this runner run on CPU 1. Servers listen on 127.0.0.1, on free ports, and
are stopped by pid.

Python 3 standard library only.
"""

import argparse
import grp
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailgen  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench-pw"
SALT = "posternbench0001"  # the same SHA512-crypt hash for every user
SERVER_CPU = 0
CLIENT_CPU = 1

N_SMALL = 500   # user000..user499: login storms and idle sessions
N_PLAIN = 64    # plain00..plain63: {PLAIN} passwords
N_BIG = 16      # big00..big15: the 200-message download mailbox

PEERS = ["dovecot", "dovecot-sc0", "popa3d"]
SERVERS = ["postern"] + PEERS
COLUMN = {
    "postern": "postern",
    "dovecot": "Dovecot (Debian default)",
    "dovecot-sc0": "Dovecot (service_count=0)",
    "popa3d": "popa3d (inetd)",
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu):
    def f():
        os.sched_setaffinity(0, {cpu})
    return f


# --------------------------------------------------------------------------
# cgroups: CPU time of a server's whole process tree, and its pid list.

class CGroup:
    base = None

    @classmethod
    def setup(cls):
        tag = f"postern-bench.{os.getpid()}"
        if os.path.isdir("/sys/fs/cgroup/cpuacct") and os.path.exists(
                "/sys/fs/cgroup/cpuacct/cpuacct.usage"):
            cls.base, cls.kind = f"/sys/fs/cgroup/cpuacct/{tag}", "v1"
        elif os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            cls.base, cls.kind = f"/sys/fs/cgroup/{tag}", "v2"
        elif os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
            cls.base, cls.kind = f"/sys/fs/cgroup/unified/{tag}", "v2"
        else:
            raise SystemExit("bench: no cgroup file system for CPU accounting")
        os.makedirs(cls.base, exist_ok=True)

    @classmethod
    def teardown(cls):
        if cls.base and os.path.isdir(cls.base):
            for d in os.listdir(cls.base):
                p = os.path.join(cls.base, d)
                if os.path.isdir(p):
                    try:
                        os.rmdir(p)
                    except OSError:
                        pass
            try:
                os.rmdir(cls.base)
            except OSError:
                pass

    def __init__(self, name):
        self.path = os.path.join(CGroup.base, name)
        os.makedirs(self.path, exist_ok=True)
        self.cpu_file = os.path.join(
            self.path, "cpuacct.usage" if CGroup.kind == "v1" else "cpu.stat")

    def join_fn(self, cpu):
        procs = os.path.join(self.path, "cgroup.procs")

        def f():
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))
            os.sched_setaffinity(0, {cpu})
        return f

    def pids(self):
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def cpu_seconds(self):
        with open(self.cpu_file) as f:
            data = f.read()
        if CGroup.kind == "v1":
            return int(data) / 1e9
        for line in data.splitlines():
            k, v = line.split()
            if k == "usage_usec":
                return int(v) / 1e6
        return 0.0

    def memory(self):
        """Sum of Pss and Rss (KB) over the processes in the cgroup."""
        pss = rss = 0
        n = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
                        elif line.startswith("Rss:"):
                            rss += int(line.split()[1])
                n += 1
            except OSError:
                pass
        return pss, rss, n

    def remove(self):
        try:
            os.rmdir(self.path)
        except OSError:
            pass


# --------------------------------------------------------------------------
# The sandbox: users, mail, TLS certificate, bind mounts.

class Sandbox:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="postern-bench.", dir="/tmp")
        os.chmod(self.tmp, 0o755)
        self.expected = {}   # bench id -> wire bytes
        self.big_stuffed = 0

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def check_namespace(self):
        outer = os.environ.get("POSTERN_BENCH_OUTER_MNTNS")
        if not outer or os.readlink("/proc/self/ns/mnt") == outer:
            raise SystemExit("bench: run.py must run in a private mount "
                             "namespace (scripts/bench uses unshare -m)")
        run(["mount", "--make-rprivate", "/"])

    def pick_ids(self):
        used_u = set()
        used_g = set()
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 3:
                    used_u.add(int(parts[2]))
        with open("/etc/group") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2:
                    used_g.add(int(parts[2]))
        for base in range(40000, 60000, 1000):
            span = set(range(base, base + 1000))
            if not (span & used_u) and not (span & used_g):
                return base
        raise SystemExit("bench: no free uid range for the bench users")

    def users(self):
        small = [f"user{i:03d}" for i in range(N_SMALL)]
        plain = [f"plain{i:02d}" for i in range(N_PLAIN)]
        big = [f"big{i:02d}" for i in range(N_BIG)]
        return small, plain, big

    def setup(self, hash_):
        self.check_namespace()
        self.hash = hash_
        base = self.pick_ids()
        self.uid = self.gid = base          # pbench: owns all Maildirs
        self.popa3d_uid = base + 1
        small, plain, big = self.users()
        self.mail_users = small + plain + big
        self.user_uid = {u: base + 10 + i for i, u in enumerate(self.mail_users)}

        # /etc files for the namespace.
        etc = self.path("etc")
        os.makedirs(etc)
        with open("/etc/passwd") as f:
            passwd = f.read()
        with open("/etc/group") as f:
            group = f.read()
        with open("/etc/shadow") as f:
            shadow = f.read()
        mail_gid = int([ln.split(":")[2] for ln in group.splitlines()
                        if ln.startswith("mail:")][0])
        self.mail_gid = mail_gid
        passwd += f"pbench:x:{self.uid}:{self.gid}:postern bench:{self.tmp}:/usr/sbin/nologin\n"
        passwd += (f"popa3d:x:{self.popa3d_uid}:{self.popa3d_uid}:popa3d:"
                   f"/var/lib/popa3d:/usr/sbin/nologin\n")
        group += f"pbench:x:{self.gid}:\npopa3d:x:{self.popa3d_uid}:\n"
        shadow += "pbench:!:20000:0:99999:7:::\npopa3d:!:20000:0:99999:7:::\n"
        for u in self.mail_users:
            uid = self.user_uid[u]
            passwd += f"{u}:x:{uid}:{self.gid}::/nonexistent:/usr/sbin/nologin\n"
            shadow += f"{u}:{hash_}:20000:0:99999:7:::\n"
        for name, data, mode in (("passwd", passwd, 0o644),
                                 ("group", group, 0o644),
                                 ("shadow", shadow, 0o640)):
            p = os.path.join(etc, name)
            with open(p, "w") as f:
                f.write(data)
            os.chmod(p, mode)
            shutil.copystat(f"/etc/{name}", p)
            st = os.stat(f"/etc/{name}")
            os.chown(p, st.st_uid, st.st_gid)
            os.chmod(p, mode)
        pamd = os.path.join(etc, "pam.d")
        shutil.copytree("/etc/pam.d", pamd, symlinks=True)
        shutil.copy(os.path.join(self.args.popa3d_root, "etc/pam.d/popa3d"),
                    os.path.join(pamd, "popa3d"))

        # /var/mail and /var/lib for popa3d (its compiled-in paths).
        spool = self.path("spool")
        os.makedirs(spool)
        os.chown(spool, 0, mail_gid)
        os.chmod(spool, 0o2775)
        varlib = self.path("varlib")
        os.makedirs(os.path.join(varlib, "popa3d"))
        os.makedirs(os.path.join(varlib, "dovecot"))
        os.chmod(os.path.join(varlib, "popa3d"), 0o755)

        self.make_mail(small, plain, big, spool)
        self.make_tls()

        for src, dst in ((os.path.join(etc, "passwd"), "/etc/passwd"),
                         (os.path.join(etc, "group"), "/etc/group"),
                         (os.path.join(etc, "shadow"), "/etc/shadow"),
                         (pamd, "/etc/pam.d"),
                         (spool, "/var/mail"),
                         (varlib, "/var/lib")):
            run(["mount", "--bind", src, dst])

    def make_mail(self, small, plain, big, spool):
        t = time.time()
        pm = self.path("mail", "postern")
        os.makedirs(pm)
        for d in (self.path("mail"), pm):
            os.chown(d, self.uid, self.gid)
            os.chmod(d, 0o755)
        big_msgs = mailgen.build_big("big00")
        small_msgs = mailgen.build_small("user000")
        plain_msgs = mailgen.build_small("plain00")
        self.big_wire = sum(len(mailgen.wire(r)) for _, r in big_msgs)
        self.big_stuffed = sum(mailgen.stuffed_len(r) for _, r in big_msgs)
        for users, msgs, proto in ((big, big_msgs, "big00"),
                                   (small, small_msgs, "user000"),
                                   (plain, plain_msgs, "plain00")):
            for u in users:
                m = mailgen.rename(msgs, proto, u)
                for bid, raw in m:
                    self.expected[bid] = mailgen.wire(raw)
                d = os.path.join(pm, u)
                os.makedirs(d)
                os.chown(d, self.uid, self.gid)
                mailgen.write_maildir(os.path.join(d, "Maildir"), m,
                                      self.uid, self.gid)
                # popa3d: /var/mail/USER, owned by the user, group mail.
                mb = os.path.join(spool, u)
                with open(mb, "wb") as f:
                    f.write(mailgen.mbox_bytes(m))
                os.chown(mb, self.user_uid[u], self.mail_gid)
                os.chmod(mb, 0o660)
        # Dovecot gets its own tree (it writes index files and renames
        # messages); hard links share the message files themselves.
        run(["cp", "-al", pm, self.path("mail", "dovecot")])
        log(f"mail: {len(self.mail_users)} users, download mailbox "
            f"{len(big_msgs)} messages, {self.big_wire} bytes "
            f"({time.time() - t:.1f} s)")

    def make_tls(self):
        d = self.path("tls")
        os.makedirs(d)
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", os.path.join(d, "key.pem"),
             "-out", os.path.join(d, "cert.pem")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for f in ("key.pem", "cert.pem"):
            os.chown(os.path.join(d, f), self.uid, self.gid)
        os.chmod(os.path.join(d, "key.pem"), 0o600)
        self.cert = os.path.join(d, "cert.pem")
        self.key = os.path.join(d, "key.pem")

    def cleanup(self):
        if self.args.keep:
            log(f"kept {self.tmp}")
            return
        for dst in ("/var/lib", "/var/mail", "/etc/pam.d", "/etc/shadow",
                    "/etc/group", "/etc/passwd"):
            subprocess.run(["umount", dst], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# Servers.

class Server:
    name = None
    tls = True
    plain = True     # supports {PLAIN} passwords in its user file

    def __init__(self, sb, args):
        self.sb = sb
        self.args = args
        self.proc = None
        self.cg = None
        self.port = None
        self.tls_port = None
        self.logf = None
        self.starts = 0
        self.users = "users"  # or "users-plain": only {PLAIN} users

    def command(self):
        raise NotImplementedError

    def prepare(self):
        pass

    def start(self):
        self.port = free_port()
        self.tls_port = free_port() if self.tls else None
        t0 = time.time()
        self.prepare()
        self.cg = CGroup(f"{self.name}")
        self.starts += 1
        self.logf = open(self.sb.path("logs", f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self.logf,
            stderr=self.logf, preexec_fn=self.cg.join_fn(SERVER_CPU),
            start_new_session=True, cwd=self.sb.tmp)
        deadline = time.time() + 30
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up "
                                   f"(status {self.proc.returncode}); see "
                                   f"{self.logf.name}")
            if all(self._listening(p) for p in ports):
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not listen within 30 s")
        time.sleep(self.settle)
        if time.time() - t0 > 10:
            log(f"  {self.name}: start-up took {time.time() - t0:.0f} s")

    settle = 1.0

    @staticmethod
    def _listening(port):
        # Checked in /proc/net/tcp rather than by connecting, so that no
        # session is started (popa3d under inetd forks per connection).
        hexport = f"{port:04X}"
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(":" + hexport) and parts[3] == "0A":
                    return True
        return False

    def stop(self):
        if self.proc is None:
            return
        t0 = time.time()
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        # Anything left in the server's cgroup is one of its processes.
        deadline = time.time() + 10
        while self.cg.pids() and time.time() < deadline:
            time.sleep(0.1)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = self.cg.pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(1)
        self.cg.remove()
        self.proc = None
        self.logf.close()
        if time.time() - t0 > 5:
            log(f"  {self.name}: stopping took {time.time() - t0:.0f} s")


class Postern(Server):
    name = "postern"
    root_mode = False

    def prepare(self):
        d = self.sb.path("postern")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, f"{self.name}.conf")
        user_line = "" if self.root_mode else '  user = "pbench";\n'
        with open(conf, "w") as f:
            f.write(f"""# written by bench/run.py
server = {{
{user_line}  hostname = "bench.invalid";
  max_sessions = 2000;
  max_sessions_per_ip = 2000;
  spare_workers = {self.spare};
  log_level = "warning";
}};
listen = (
  {{ name = "pop3"; address = "127.0.0.1"; port = {self.port}; tls = "none"; }},
  {{ name = "pop3s"; address = "127.0.0.1"; port = {self.tls_port}; tls = "implicit"; }}
);
tls = {{ certificate = "{self.sb.cert}"; key = "{self.sb.key}"; }};
modules_dir = "{self.args.build}/modules";
auth = ( {{ module = "passwd"; file = "{self.sb.path('postern', self.users)}"; }} );
storage = ( {{ module = "maildir"; path = "{self.sb.path('mail', 'postern')}/%u/Maildir"; }} );
commands = [ "top", "uidl" ];
""")
        self.conf = conf
        run([self.daemon(), "-t", "-c", conf], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)

    spare = 16

    def daemon(self):
        return os.path.join(self.args.build, "core", "postern")

    def command(self):
        return [self.daemon(), "-c", self.conf]


class PosternRoot(Postern):
    """A root daemon with system-style users: every session switches to
    the user's uid/gid from the users file and its worker exits after it."""
    name = "postern-root"
    root_mode = True


class Dovecot(Server):
    name = "dovecot"
    sc0 = False
    settle = 1.5

    def prepare(self):
        d = self.sb.path("dovecot")
        os.makedirs(d, exist_ok=True)
        run_dir = os.path.join(d, f"run-{self.name}-{self.starts}")
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        state = os.path.join(d, f"state-{self.name}")
        os.makedirs(state, exist_ok=True)
        login = ""
        if self.sc0:
            # Dovecot's documented high-performance login mode: login
            # processes serve many connections and are never recycled.
            login = """  service_count = 0
  process_min_avail = 1
  client_limit = 4000
"""
        conf = os.path.join(d, f"{self.name}.conf")
        with open(conf, "w") as f:
            f.write(f"""# written by bench/run.py: Dovecot's defaults (Debian's process
# layout) with a passwd-file user database and Maildir.
base_dir = {run_dir}
state_dir = {state}
instance_name = bench-{self.name}
log_path = {self.sb.path('logs', self.name + '-dovecot.log')}
protocols = pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.sb.cert}
ssl_key = <{self.sb.key}
ssl_dh = </usr/share/dovecot/dh.pem
ssl_client_ca_dir = /etc/ssl/certs
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = {self.sb.path('dovecot', self.users)}
}}
userdb {{
  driver = passwd-file
  args = {self.sb.path('dovecot', self.users)}
}}
mail_location = maildir:~/Maildir
mail_privileged_group = mail
namespace inbox {{
  inbox = yes
}}
# Room for the 500-session memory scenario (limits only, not the layout).
default_process_limit = 1100
default_client_limit = 4000
mail_max_userip_connections = 100
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
{login}}}
service pop3 {{
  process_limit = 1100
}}
""")
        self.conf = conf
        run(["doveconf", "-c", conf, "-n"], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)

    def command(self):
        return ["dovecot", "-F", "-c", self.conf]


class DovecotSC0(Dovecot):
    name = "dovecot-sc0"
    sc0 = True


class Popa3d(Server):
    name = "popa3d"
    tls = False
    plain = False
    settle = 0.5

    def command(self):
        return ["systemd-socket-activate", "--inetd", "-a", "-l",
                f"127.0.0.1:{self.port}",
                os.path.join(self.args.popa3d_root, "usr/sbin/popa3d")]


def write_user_files(sb):
    small, plain, big = sb.users()
    # postern and Dovecot read the same passwd-file format.
    for who, tree in (("postern", "postern"), ("dovecot", "dovecot")):
        d = sb.path(who)
        os.makedirs(d, exist_ok=True)
        lines = []
        for u in small + big:
            lines.append(f"{u}:{sb.hash}:{sb.uid}:{sb.gid}::"
                         f"{sb.path('mail', tree, u)}::")
        for u in plain:
            lines.append(f"{u}:{{PLAIN}}{PASSWORD}:{sb.uid}:{sb.gid}::"
                         f"{sb.path('mail', tree, u)}::")
        # "users" has every user; "users-plain" only the {PLAIN} ones
        # (postern pays a dummy hash of the file's most common scheme for
        # a {PLAIN} entry, so that timing does not tell schemes apart; in
        # a file of {PLAIN} entries only, that dummy is plain too).
        for name, sel in (("users", lines),
                          ("users-plain", lines[len(small) + len(big):])):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write("\n".join(sel) + "\n")
            if who == "postern":
                os.chown(p, sb.uid, sb.gid)
                os.chmod(p, 0o600)
            else:
                # Read by Dovecot's auth process, which runs as dovecot.
                os.chown(p, 0, grp.getgrnam("dovecot").gr_gid)
                os.chmod(p, 0o640)


# --------------------------------------------------------------------------
# Checking what a server delivers.

class Pop3:
    """A minimal blocking POP3 client that returns raw bytes."""

    def __init__(self, port, tls=False, timeout=30):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        self.s = s
        self.buf = b""
        self.line()

    def _fill(self):
        d = self.s.recv(262144)
        if not d:
            raise RuntimeError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise RuntimeError("status line too long")
            self._fill()
        ln, _, self.buf = self.buf.partition(b"\r\n")
        if not ln.startswith(b"+OK"):
            raise RuntimeError(f"server said {ln[:100]!r}")
        return ln

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        return self.line()

    def multi(self, c):
        self.cmd(c)
        self.buf = b"\r\n" + self.buf
        while b"\r\n.\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n.\r\n")
        body, self.buf = self.buf[2:i + 2], self.buf[i + 5:]
        return body

    def close(self):
        try:
            self.cmd("QUIT")
        finally:
            self.s.close()


def unstuff(body):
    lines = body.split(b"\r\n")
    assert lines[-1] == b""
    return b"\r\n".join(ln[1:] if ln.startswith(b".") else ln
                        for ln in lines)


def verify(server, sb, users, tls=False):
    """RETR every message of each user and compare it with the generated
    copy. Returns a list of problems (empty: the bytes are right)."""
    problems = []
    notes = []
    port = server.tls_port if tls else server.port
    for u in users:
        want = {bid: w for bid, w in sb.expected.items()
                if bid.rsplit("-", 1)[0] == u}
        try:
            c = Pop3(port, tls)
            c.cmd(f"USER {u}")
            c.cmd(f"PASS {PASSWORD}")
            listing = c.multi("LIST").split(b"\r\n")[:-1]
            if len(listing) != len(want):
                problems.append(f"{u}: {len(listing)} messages, want "
                                f"{len(want)}")
            seen = set()
            for entry in listing:
                num, size = entry.split()
                got = unstuff(c.multi(f"RETR {int(num)}"))
                first = got.split(b"\r\n", 1)[0]
                bid = first[len(b"X-Bench-Id: "):].decode(errors="replace")
                if bid not in want:
                    problems.append(f"{u} {num.decode()}: unknown message "
                                    f"{first[:60]!r}")
                elif got != want[bid]:
                    problems.append(f"{u} {num.decode()}: WRONG BYTES "
                                    f"({len(got)} received, "
                                    f"{len(want[bid])} expected)")
                elif int(size) != len(want[bid]):
                    notes.append(f"{u} {num.decode()}: LIST size "
                                 f"{int(size)}, wire size {len(want[bid])}")
                seen.add(bid)
            if seen != set(want):
                problems.append(f"{u}: {len(set(want) - seen)} messages "
                                f"never delivered")
            c.close()
        except Exception as e:  # noqa: BLE001 -- reported as a problem
            problems.append(f"{u}: {e}")
    return problems, notes


# --------------------------------------------------------------------------
# Measurements.

def popload(args, server, mode, clients, tls=False, stock=False,
            user_fmt="user%03d", user_base=0, user_count=None,
            duration=None, warmup=None, sessions=None, extra=()):
    cmd = [args.popload, "--port",
           str(server.tls_port if tls else server.port),
           "--clients", str(clients), "--user-fmt", user_fmt,
           "--user-base", str(user_base),
           "--user-count", str(user_count or clients),
           "--pass", PASSWORD, "--cpu-file", server.cg.cpu_file]
    if tls:
        cmd.append("--tls")
    if stock:
        cmd.append("--stock")
    if sessions:
        cmd += ["--sessions", str(sessions), "--timeout", "600"]
        limit = 660
    else:
        d = duration or args.duration
        w = warmup if warmup is not None else args.warmup
        cmd += ["--duration", str(d), "--warmup", str(w), "--drain", "30",
                "--timeout", str(d + w + 60)]
        limit = d + w + 90
    cmd += list(extra) + [mode]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       preexec_fn=pin(CLIENT_CPU), timeout=limit, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"popload failed: {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def foreign_load(r):
    """CPU time other processes took on the two pinned CPUs during the
    window, as a fraction of the window (the machine may be shared)."""
    w = r.get("window_s") or 0
    if w <= 0 or r.get("server_cpu_s", -1) < 0:
        return 0.0
    f0 = max(0.0, r["cpu0_busy_s"] - r["server_cpu_s"])
    f1 = max(0.0, r["cpu1_busy_s"] - r["client_cpu_s"])
    return max(f0, f1) / w


def popload_window(args, *a, **kw):
    """A measuring window, repeated (up to --attempts times) while other
    processes took more than --max-foreign of a pinned CPU during it; the
    least disturbed attempt counts."""
    best = None
    for attempt in range(args.attempts):
        r = popload(args, *a, **kw)
        r["foreign"] = round(foreign_load(r), 3)
        r["attempt"] = attempt + 1
        if best is None or r["foreign"] < best["foreign"]:
            best = r
        if r["foreign"] <= args.max_foreign or r["errors"]:
            break
    return best


def check_load(r, what):
    bad = r["errors"] > 0 or (r["sessions"] == 0 and r["bytes"] == 0)
    if bad:
        log(f"  {what}: {r['errors']} errors, {r['sessions']} sessions; "
            f"first: {r['first_error']}")
    if r.get("foreign", 0) > 0.25:
        log(f"  {what}: other processes took {r['foreign']:.0%} of a "
            f"pinned CPU (best of {r['attempt']} attempts)")
    if r.get("client_cpu_s", 0) > 0.9 * r["window_s"]:
        log(f"  {what}: WARNING: the load generator used "
            f"{r['client_cpu_s'] / r['window_s']:.0%} of CPU 1 (client-bound)")
    return not bad


def measure_login(args, server, res, key, clients, tls=False,
                  user_fmt="user%03d"):
    r = popload_window(args, server, "login", clients, tls=tls,
                       user_fmt=user_fmt)
    ok = check_load(r, key)
    res.setdefault("_raw", {})[key] = r
    if not ok:
        return
    res[key + "_rate"] = r["sessions"] / r["window_s"]
    if r["server_cpu_s"] >= 0:
        res[key + "_cpu"] = r["server_cpu_s"] / r["sessions"] * 1e3
    res[key + "_cpu0"] = r["cpu0_busy_s"] / r["sessions"] * 1e3


def measure_download(args, server, res, key, clients, sb, tls=False,
                     stock=False):
    r = popload_window(args, server, "download", clients, tls=tls,
                       stock=stock, user_fmt="big%02d",
                       user_count=min(clients, N_BIG), warmup=args.warmup_dl)
    ok = check_load(r, key)
    res.setdefault("_raw", {})[key] = r
    if r["retr_bytes_per_session"] not in (0, sb.big_stuffed) or \
            r["retr_bytes_mismatch"]:
        log(f"  {key}: RETR bytes per session {r['retr_bytes_per_session']}"
            f", expected {sb.big_stuffed}")
        ok = False
    if not ok or r["bytes"] == 0:
        return
    res[key + "_mbps"] = r["bytes"] / r["window_s"] / 1e6
    if r["server_cpu_s"] >= 0:
        res[key + "_cpu"] = (r["server_cpu_s"] * sb.big_stuffed / r["bytes"]
                             * 1e3)


def measure_stock_client(args, server, res, key):
    d = args.duration
    cmd = [sys.executable, os.path.join(ROOT, "bench", "stock_client.py"),
           str(server.port), "big00", PASSWORD, str(d), str(args.warmup_dl)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       preexec_fn=pin(CLIENT_CPU), timeout=d + 120, text=True)
    if p.returncode != 0:
        log(f"  {key}: stock client failed: {p.stderr.strip()[-300:]}")
        return
    r = json.loads(p.stdout.strip().splitlines()[-1])
    res.setdefault("_raw", {})[key] = r
    if r["bytes"] > 0:
        res[key + "_mbps"] = r["bytes"] / r["window_s"] / 1e6


def measure_memory(args, server, res, mode, key, tls=False):
    """Restart the server, take its idle baseline, open N idle sessions
    (over implicit TLS with tls), and measure PSS and RSS again. Per
    session: the difference / N."""
    server.stop()
    server.start()
    time.sleep(1.0)
    base = server.cg.memory()
    n = args.idle
    cmd = [args.popload, "--port", str(server.port), "--clients", str(n),
           "--user-fmt", "user%03d", "--user-count", str(N_SMALL),
           "--pass", PASSWORD, "--timeout", "300", mode]
    if tls:
        cmd[1:3] = ["--port", str(server.tls_port), "--tls"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=pin(CLIENT_CPU),
                         text=True)
    try:
        ready = p.stdout.readline().split()
        held = int(ready[1].split("=")[1]) if ready and ready[0] == "ready" \
            else 0
        time.sleep(1.5)
        loaded = server.cg.memory()
        p.stdin.write("release\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    except Exception:
        p.kill()
        p.wait()
        raise
    r = json.loads(out.strip().splitlines()[-1])
    r.update(base_pss=base[0], base_rss=base[1], base_procs=base[2],
             loaded_pss=loaded[0], loaded_rss=loaded[1],
             loaded_procs=loaded[2])
    res.setdefault("_raw", {})[key] = r
    if held < n or r["errors"]:
        log(f"  {key}: held {held} of {n}, errors {r['errors']}: "
            f"{r['first_error']}")
        if held < n * 0.95:
            return
    res[key + "_pss"] = (loaded[0] - base[0]) / held
    res[key + "_rss"] = (loaded[1] - base[1]) / held


def vm_cost(args):
    p = subprocess.run([args.popload, "vmcost"], stdout=subprocess.PIPE,
                       check=True, preexec_fn=pin(SERVER_CPU), text=True)
    return json.loads(p.stdout)


def crypt_floor(args, sb):
    p = subprocess.run([args.popload, "crypt", sb.hash, PASSWORD,
                        str(args.crypt_count)], stdout=subprocess.PIPE,
                       check=True, preexec_fn=pin(SERVER_CPU), text=True)
    return json.loads(p.stdout)["crypt_ms"]


def beside_crypt(args, server, res, key, measure):
    """Runs measure() between two timings of one SHA512-crypt on CPU 0 and
    stores res[key] also in crypts (key + "_crypts"): this shared VM's
    speed drifts by tens of percent over minutes, so a CPU time is
    compared with the same yardstick measured beside it, not minutes
    apart."""
    before = crypt_floor(args, server.sb)
    measure()
    if key in res:
        floor = (before + crypt_floor(args, server.sb)) / 2
        res[key + "_crypts"] = res[key] / floor


def bench_server(args, sb, server, res):
    """One run of every scenario against one server."""
    t = time.time()
    server.start()
    try:
        problems, notes = verify(server, sb, args.verify_users)
        if not problems and server.tls:
            p2, n2 = verify(server, sb, args.verify_users[:1], tls=True)
            problems += [f"TLS: {p}" for p in p2]
            notes += n2
        res["verify_problems"] = problems
        res["verify_notes"] = notes
        if problems:
            log(f"  {server.name}: check failed, no figures this run: "
                + "; ".join(problems[:5]))
            return
        if notes:
            log(f"  {server.name}: note: " + "; ".join(notes[:3]))
        want = args.scenarios
        if "login" in want:
            for n in (1, 16, 64):
                if n == 16:
                    beside_crypt(args, server, res, "login16_cpu",
                                 lambda: measure_login(args, server, res,
                                                       "login16", 16))
                else:
                    measure_login(args, server, res, f"login{n}", n)
        if server.tls and "tlslogin" in want:
            measure_login(args, server, res, "tlslogin16", 16, tls=True)
        if "download" in want:
            for n in (1, 16):
                if n == 16:
                    beside_crypt(args, server, res, "dl16_cpu",
                                 lambda: measure_download(args, server, res,
                                                          "dl16", 16, sb))
                else:
                    measure_download(args, server, res, "dl1", 1, sb)
                measure_download(args, server, res, f"dlstock{n}", n, sb,
                                 stock=True)
            measure_stock_client(args, server, res, "poplib1")
        if server.tls and "tlsdownload" in want:
            for n in (1, 16):
                measure_download(args, server, res, f"tlsdl{n}", n, sb,
                                 tls=True)
        if server.plain and "plain" in want:
            # The same server with a users file of {PLAIN} entries only.
            server.stop()
            server.users = "users-plain"
            server.start()
            for n in (1, 16):
                measure_login(args, server, res, f"plain{n}", n,
                              user_fmt="plain%02d")
            server.users = "users"
        if "memory" in want:
            measure_memory(args, server, res, "idle-auth", "idleauth")
            measure_memory(args, server, res, "idle-unauth", "idleunauth")
            if server.tls:
                measure_memory(args, server, res, "idle-auth",
                               "tlsidleauth", tls=True)
    finally:
        server.stop()
    log(f"  {server.name}: done in {time.time() - t:.0f} s")


def bench_postern_root(args, sb, server, res):
    t = time.time()
    server.start()
    try:
        problems, _ = verify(server, sb, args.verify_users[:1])
        if problems:
            log(f"  {server.name}: WRONG BYTES: " + "; ".join(problems[:5]))
            res["verify_problems"] = problems
            return
        if "login" in args.scenarios:
            for n in (1, 16):
                measure_login(args, server, res, f"rootlogin{n}", n)
    finally:
        server.stop()
    log(f"  {server.name}: done in {time.time() - t:.0f} s")


# --------------------------------------------------------------------------
# Instruction counts (callgrind) for postern.

def callgrind(args, sb):
    """Ir per login session and per RETR byte.

    Only the workers are counted (--toggle-collect=worker_main): a forked
    worker would otherwise also carry the master's start-up counts, and
    the master's share of a session (accept, greeting, hand-off) is a few
    thousand instructions. Each figure is the difference of two runs, so
    a worker's first-session costs and its exit drop out too."""
    out = {}

    class CG(Postern):
        name = "postern-callgrind"
        spare = 2
        settle = 0.5

        def command(self):
            return ["valgrind", "--tool=callgrind", "--trace-children=yes",
                    "--collect-atstart=no", "--toggle-collect=worker_main",
                    f"--callgrind-out-file={self.cgdir}/callgrind.out.%p",
                    self.daemon(), "-c", self.conf]

    def one(workload):
        s = CG(sb, args)
        s.cgdir = tempfile.mkdtemp(dir=sb.tmp, prefix="callgrind.")
        os.chown(s.cgdir, sb.uid, sb.gid)
        s.start()
        try:
            time.sleep(1.0)
            workload(s)
            time.sleep(0.5)
        finally:
            s.stop()
        total = 0
        files = 0
        os.chmod(s.cgdir, 0o755)
        for f in os.listdir(s.cgdir):
            with open(os.path.join(s.cgdir, f), errors="replace") as fh:
                for line in fh:
                    if line.startswith(("summary:", "totals:")):
                        total += int(line.split()[1])
                        files += 1
                        break
        return total, files

    # Warm postern's size caches first (as the runs before have done), so
    # that no counted session is the first to open its mailbox.
    w = Postern(sb, args)
    w.start()
    try:
        popload(args, w, "login", 1, sessions=1, user_count=1)
        popload(args, w, "login", 1, sessions=1, user_fmt="big%02d",
                user_count=1)
    finally:
        w.stop()
    k1, k2 = args.cg_logins
    logins = {}
    for k in (k1, k2):
        logins[k], _ = one(lambda s, k=k: popload(
            args, s, "login", 1, sessions=k, user_count=1))
    out["ir_login"] = (logins[k2] - logins[k1]) / (k2 - k1)
    kd = args.cg_downloads
    b, _ = one(lambda s: popload(args, s, "login", 1, sessions=kd,
                                 user_fmt="big%02d", user_count=1))
    d, _ = one(lambda s: popload(args, s, "download", 1, sessions=kd,
                                 user_fmt="big%02d", user_count=1))
    out["ir_byte"] = (d - b) / (kd * sb.big_stuffed)
    # The floor for reference: one SHA512-crypt in the same libcrypt.
    ir = {}
    for n in (2, 6):
        f = os.path.join(sb.tmp, f"callgrind.crypt.{n}")
        subprocess.run(["valgrind", "--tool=callgrind",
                        f"--callgrind-out-file={f}", args.popload, "crypt",
                        sb.hash, PASSWORD, str(n)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(f) as fh:
            ir[n] = next(int(ln.split()[1]) for ln in fh
                         if ln.startswith(("summary:", "totals:")))
    out["ir_crypt"] = (ir[6] - ir[2]) / 4
    out["ir_raw"] = {"logins": logins, "big_login": b, "download": d}
    return out


# --------------------------------------------------------------------------
# The table.

ROWS = [
    # key, label, unit, higher is better, format
    ("login1_rate", "login storm N=1", "sessions/s", True, "{:.0f}"),
    ("login16_rate", "login storm N=16", "sessions/s", True, "{:.0f}"),
    ("login64_rate", "login storm N=64", "sessions/s", True, "{:.0f}"),
    ("login16_cpu", "CPU per login, N=16", "ms", False, "{:.2f}"),
    ("login16_cpu_crypts", "CPU per login, N=16, in SHA512-crypts "
     "measured beside it", "x", False, "{:.2f}"),
    ("plain1_rate", "login storm N=1, {PLAIN} passwords", "sessions/s",
     True, "{:.0f}"),
    ("plain16_rate", "login storm N=16, {PLAIN} passwords", "sessions/s",
     True, "{:.0f}"),
    ("plain16_cpu", "CPU per {PLAIN} login, N=16", "ms", False, "{:.3f}"),
    ("rootlogin1_rate", "login N=1, root daemon + system users",
     "sessions/s", True, "{:.0f}"),
    ("rootlogin16_rate", "login N=16, root daemon + system users",
     "sessions/s", True, "{:.0f}"),
    ("rootlogin16_cpu", "CPU per login N=16, root daemon + system users",
     "ms", False, "{:.2f}"),
    ("tlslogin16_rate", "TLS login storm N=16", "sessions/s", True,
     "{:.0f}"),
    ("tlslogin16_cpu", "CPU per TLS login, N=16", "ms", False, "{:.2f}"),
    ("dl1_mbps", "download N=1", "MB/s", True, "{:.0f}"),
    ("dl16_mbps", "download N=16", "MB/s", True, "{:.0f}"),
    ("dl16_cpu_crypts", "CPU per 8.5 MB download session, N=16, in "
     "SHA512-crypts measured beside it", "x", False, "{:.1f}"),
    ("dl16_cpu", "CPU per 8.5 MB download session, N=16", "ms", False,
     "{:.1f}"),
    ("dlstock1_mbps", "download N=1, stock ACKs (no QUICKACK/NODELAY)",
     "MB/s", True, "{:.0f}"),
    ("dlstock16_mbps", "download N=16, stock ACKs (no QUICKACK/NODELAY)",
     "MB/s", True, "{:.0f}"),
    ("poplib1_mbps", "download N=1, Python poplib client", "MB/s", True,
     "{:.0f}"),
    ("tlsdl1_mbps", "TLS download N=1", "MB/s", True, "{:.0f}"),
    ("tlsdl16_mbps", "TLS download N=16", "MB/s", True, "{:.0f}"),
    ("tlsdl16_cpu", "CPU per 8.5 MB TLS download session, N=16", "ms",
     False, "{:.1f}"),
    ("idleauth_pss", "PSS per idle authenticated session", "KB", False,
     "{:.0f}"),
    ("idleauth_rss", "RSS per idle authenticated session", "KB", False,
     "{:.0f}"),
    ("tlsidleauth_pss", "PSS per idle authenticated TLS session", "KB",
     False, "{:.0f}"),
    ("tlsidleauth_rss", "RSS per idle authenticated TLS session", "KB",
     False, "{:.0f}"),
    ("idleunauth_pss", "PSS per idle unauthenticated connection", "KB",
     False, "{:.1f}"),
    ("idleunauth_rss", "RSS per idle unauthenticated connection", "KB",
     False, "{:.1f}"),
]


def collect(runs, server, key):
    vals = [r[server][key] for r in runs
            if isinstance(r.get(server), dict) and key in r[server]]
    return vals


def cell(vals, fmt):
    if not vals:
        return None
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def median_of(runs, server, key):
    vals = collect(runs, server, key)
    return statistics.median(vals) if vals else None


def table(runs, extra, servers):
    cols = [s for s in SERVERS if s in servers]
    head = "| figure | " + " | ".join(COLUMN[s] for s in cols) + \
        " | postern ÷ best peer |"
    lines = [head, "|" + " --- |" * (len(cols) + 2)]
    for key, label, unit, higher, fmt in ROWS:
        cells = []
        any_val = False
        for s in cols:
            src = "postern-root" if key.startswith("rootlogin") and \
                s == "postern" else s
            vals = collect(runs, src, key)
            c = cell(vals, fmt)
            if c is None:
                probs = [p for r in runs
                         for p in r.get(src, {}).get("verify_problems", [])]
                failed = any(r.get(src, {}).get("error") for r in runs)
                c = ("wrong bytes" if any("WRONG BYTES" in p for p in probs)
                     else "check failed" if probs
                     else "failed" if failed else "–")
            else:
                any_val = True
            cells.append(c)
        if not any_val:
            continue
        ratio = "–"
        p = median_of(runs, "postern-root" if key.startswith("rootlogin")
                      else "postern", key)
        peers = [v for v in (median_of(runs, s, key) for s in PEERS
                             if s in cols) if v is not None and v > 0]
        if p is not None and peers and not key.startswith("rootlogin"):
            best = max(peers) if higher else min(peers)
            ratio = f"{p / best:.2f}x"
        lines.append(f"| {label} ({unit}) | " + " | ".join(cells) +
                     f" | {ratio} |")
    if extra.get("crypt_ms"):
        lines.append(f"| one SHA512-crypt, 5000 rounds (the floor), CPU 0 "
                     f"(ms) | {cell(extra['crypt_ms'], '{:.3f}')} |" +
                     " |" * (len(cols) - 1) + " – |")
    if extra.get("fault_us"):
        lines.append(f"| this machine: one minor page fault, CPU 0 (µs) | "
                     f"{cell(extra['fault_us'], '{:.2f}')} |" +
                     " |" * (len(cols) - 1) + " – |")
        lines.append(f"| this machine: one system call (getppid), CPU 0 "
                     f"(µs) | {cell(extra['syscall_us'], '{:.2f}')} |" +
                     " |" * (len(cols) - 1) + " – |")
    if extra.get("ir_login"):
        lines.append(f"| callgrind: instructions per login session (Ir) | "
                     f"{extra['ir_login']:,.0f} |" + " |" * (len(cols) - 1) +
                     " – |")
        if extra.get("ir_crypt"):
            lines.append(f"| callgrind: one SHA512-crypt, for reference "
                         f"(Ir) | {extra['ir_crypt']:,.0f} |" +
                         " |" * (len(cols) - 1) + " – |")
        lines.append(f"| callgrind: instructions per RETR byte (Ir) | "
                     f"{extra['ir_byte']:.3f} |" + " |" * (len(cols) - 1) +
                     " – |")
    return "\n".join(lines)


def targets(runs, extra):
    """Each target of issue 5 with its measured ratio."""
    m = lambda s, k: median_of(runs, s, k)  # noqa: E731
    out = []

    def best(key, higher=True, among=PEERS):
        vals = [(m(s, key), s) for s in among if m(s, key) is not None]
        if not vals:
            return None, None
        return (max if higher else min)(vals)

    def add(name, value, limit, ok_if_ge, detail):
        if value is None or limit is None:
            out.append((name, "not measured", detail))
            return
        ok = value >= limit if ok_if_ge else value <= limit
        out.append((name, "met" if ok else "missed", detail))

    pv, (bv, bs) = m("postern", "login16_rate"), best("login16_rate")
    add("login N=16 >= 2.5x best peer", pv / bv if pv and bv else None, 2.5,
        True, f"{pv and bv and pv / bv:.2f}x of {bs}" if pv and bv else "")
    crypt = statistics.median(extra["crypt_ms"]) if extra.get("crypt_ms") \
        else None
    pc, pr = m("postern", "login16_cpu"), m("postern", "login16_cpu_crypts")
    add("CPU per login <= 1.2x one SHA512-crypt", pr, 1.2, False,
        f"{pr:.2f}x (crypt measured beside each window; {pc:.2f} ms vs "
        f"{crypt:.2f} ms at the start of the runs)"
        if pr and pc and crypt else "")
    pv = m("postern", "plain16_rate")
    bv, bs = best("plain16_rate", among=["dovecot", "dovecot-sc0"])
    add("{PLAIN} login N=16 >= 10x Dovecot", pv / bv if pv and bv else None,
        10, True, f"{pv / bv:.2f}x of {bs}" if pv and bv else "")
    pv, av = m("postern", "dl16_mbps"), m("popa3d", "dl16_mbps")
    add("download N=16 >= 2.5x popa3d MB/s", pv / av if pv and av else None,
        2.5, True, f"{pv / av:.2f}x" if pv and av else "")
    pv, av = m("postern", "dl16_cpu_crypts"), m("popa3d", "dl16_cpu_crypts")
    rp, ra = m("postern", "dl16_cpu"), m("popa3d", "dl16_cpu")
    add("download CPU per session <= 1/3 of popa3d",
        pv / av if pv and av else None, 1 / 3, False,
        f"{pv / av:.2f}x in crypts measured beside each window "
        f"({rp / ra:.2f}x in ms)" if pv and av and rp and ra else "")
    for n in (1, 16):
        q, s_ = m("postern", f"dl{n}_mbps"), m("postern", f"dlstock{n}_mbps")
        add(f"stock-ACK client within 10% of quick-ACK (N={n})",
            s_ / q if q and s_ else None, 0.9, True,
            f"{s_ / q:.2f}x" if q and s_ else "")
    pv, dv = m("postern", "tlslogin16_rate"), m("dovecot-sc0",
                                                 "tlslogin16_rate")
    add("TLS login N=16 >= 2.5x Dovecot (service_count=0)",
        pv / dv if pv and dv else None, 2.5, True,
        f"{pv / dv:.2f}x" if pv and dv else "")
    pv, dv = m("postern", "tlsdl16_mbps"), m("dovecot-sc0", "tlsdl16_mbps")
    add("TLS download N=16 >= 4x Dovecot (service_count=0)",
        pv / dv if pv and dv else None, 4, True,
        f"{pv / dv:.2f}x" if pv and dv else "")
    pv, av = m("postern", "idleauth_pss"), m("popa3d", "idleauth_pss")
    add("idle authenticated session PSS <= 1/3 of popa3d",
        pv / av if pv and av else None, 1 / 3, False,
        f"{pv:.0f} KB vs {av:.0f} KB = {pv / av:.2f}x" if pv and av else "")
    pv = m("postern", "idleunauth_pss")
    add("idle unauthenticated connection <= 16 KB", pv, 16, False,
        f"{pv:.1f} KB PSS" if pv is not None else "")
    return out


# --------------------------------------------------------------------------

SCENARIOS = ["login", "tlslogin", "download", "tlsdownload", "plain",
             "memory"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--servers", default=",".join(SERVERS + ["postern-root"]))
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="a subset of: " + ", ".join(SCENARIOS))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--attempts", type=int, default=3,
                    help="tries per window while the machine is busy")
    ap.add_argument("--max-foreign", type=float, default=0.15,
                    help="share of a pinned CPU other processes may take "
                    "during a window before it is repeated")
    ap.add_argument("--commit", default="",
                    help="the postern commit that was built")
    ap.add_argument("--build", required=True)
    ap.add_argument("--popload", required=True)
    ap.add_argument("--popa3d-root", required=True)
    ap.add_argument("--results", required=True,
                    help="directory for results.json and table.md")
    args = ap.parse_args()
    if args.quick:
        args.runs = 1 if args.runs is None else args.runs
        args.duration = args.duration or 1.0
        args.warmup, args.warmup_dl = 0.3, 0.5
        args.idle = 100
        args.crypt_count = 100
        args.cg_logins = (2, 6)
        args.cg_downloads = 1
        args.verify_users = ["big00", "user000", "plain00"]
    else:
        args.runs = 3 if args.runs is None else args.runs
        args.duration = args.duration or 3.0
        args.warmup, args.warmup_dl = 0.5, 1.0
        args.idle = 500
        args.crypt_count = 300
        args.cg_logins = (5, 25)
        args.cg_downloads = 2
        args.verify_users = ["big00", "big15", "user000", "user499",
                             "plain00"]
    if not 0 <= args.runs <= 20 or not 0.2 <= args.duration <= 120:
        raise SystemExit("bench: --runs 1..20, --duration 0.2..120")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenarios = {s.strip() for s in args.scenarios.split(",")
                      if s.strip()}
    if not args.scenarios <= set(SCENARIOS):
        raise SystemExit("bench: --scenarios: one or more of "
                         + ", ".join(SCENARIOS))
    if os.geteuid() != 0:
        raise SystemExit("bench: must run as root")
    os.sched_setaffinity(0, {CLIENT_CPU})
    if os.cpu_count() < 2:
        raise SystemExit("bench: needs 2 CPUs (server on 0, client on 1)")

    hash_ = subprocess.run(["openssl", "passwd", "-6", "-salt", SALT,
                            PASSWORD], stdout=subprocess.PIPE, check=True,
                           text=True).stdout.strip()
    sb = Sandbox(args)
    CGroup.setup()
    started = time.time()
    runs = []
    extra = {"crypt_ms": []}
    live = []
    try:
        sb.setup(hash_)
        os.makedirs(sb.path("logs"))
        write_user_files(sb)
        classes = {"postern": Postern, "dovecot": Dovecot,
                   "dovecot-sc0": DovecotSC0, "popa3d": Popa3d,
                   "postern-root": PosternRoot}
        order = [s for s in SERVERS if s in servers]
        for i in range(args.runs):
            res = {}
            extra["crypt_ms"].append(crypt_floor(args, sb))
            vc = vm_cost(args)
            extra.setdefault("fault_us", []).append(vc["fault_us"])
            extra.setdefault("syscall_us", []).append(vc["syscall_us"])
            k = i % len(order) if order else 0
            rot = order[k:] + order[:k]
            if "postern-root" in servers:
                rot.append("postern-root")
            with open("/proc/loadavg") as f:
                res["_loadavg_start"] = f.read().split()[0]
            log(f"run {i + 1} of {args.runs}: {', '.join(rot)} "
                f"(load average {res['_loadavg_start']})")
            for name in rot:
                srv = classes[name](sb, args)
                live.append(srv)
                res[name] = {}
                try:
                    if name == "postern-root":
                        bench_postern_root(args, sb, srv, res[name])
                    else:
                        bench_server(args, sb, srv, res[name])
                except Exception as e:  # noqa: BLE001
                    log(f"  {name}: FAILED: {e}")
                    res[name]["error"] = str(e)
                    srv.stop()
                live.remove(srv)
            with open("/proc/loadavg") as f:
                res["_loadavg_end"] = f.read().split()[0]
            runs.append(res)
        if not args.no_callgrind and "postern" in servers:
            log("callgrind: postern instruction counts")
            try:
                extra.update(callgrind(args, sb))
            except Exception as e:  # noqa: BLE001
                log(f"  callgrind FAILED: {e}")
    finally:
        for s in live:
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass
        logs = sb.path("logs")
        os.makedirs(args.results, exist_ok=True)
        if os.path.isdir(logs):
            dst = os.path.join(args.results, "logs")
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(logs, dst)
        sb.cleanup()
        CGroup.teardown()

    md = table(runs, extra, servers)
    tg = targets(runs, extra)
    elapsed = time.time() - started
    loads = [float(r[k]) for r in runs for k in ("_loadavg_start",
                                                  "_loadavg_end") if k in r]
    load = (f"; load average {min(loads):.1f}–{max(loads):.1f}"
            if loads else "")
    info = (f"{args.runs} run(s), {args.duration:g} s windows{load}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, {elapsed / 60:.1f} min; "
            f"postern {args.commit or '?'}")
    out = [f"<!-- scripts/bench: {info} -->", "", md, "",
           "| target | status | measured |", "| --- | --- | --- |"]
    out += [f"| {n} | {s} | {d} |" for n, s, d in tg]
    text = "\n".join(out) + "\n"
    with open(os.path.join(args.results, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.results, "results.json"), "w") as f:
        json.dump({"runs": runs, "extra": extra, "info": info,
                   "big_stuffed": sb.big_stuffed}, f, indent=1,
                  default=str)
    print(text)
    failed = [n for r in runs for n, v in r.items()
              if isinstance(v, dict) and v.get("error")]
    if failed:
        log(f"failed: {', '.join(sorted(set(failed)))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
