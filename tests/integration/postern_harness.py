"""Shared helper of postern's integration tests (Python 3.11 stdlib only).

A Server builds a temporary tree (config, passwd-file, Maildirs), starts the
real daemon (env POSTERN_BIN) in the foreground with its stderr captured to a
file, waits until its port listens, and stops it by pid. A Pop3 object is a
raw-socket client that keeps the exact bytes, so tests can check dot-stuffing
and line endings byte for byte.

Environment (set by tests/integration/meson.build):
  POSTERN_BIN          the daemon executable
  POSTERN_MODULES_DIR  <builddir>/modules
  POSTERN_SRC          the source root
Optional:
  POSTERN_IT_KEEP=1    keep the temporary trees (their paths are printed)
  POSTERN_IT_SLOW=N    multiply waiting timeouts by N (sanitizer builds)

When running as root, every server gets `user = "nobody";` in its server
group (unless drop_user=False) and its whole tree is chowned to nobody.
"""

import atexit
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

BIN = os.environ.get("POSTERN_BIN", "")
MODULES_DIR = os.environ.get("POSTERN_MODULES_DIR", "")
SRC = os.environ.get("POSTERN_SRC", "")
IS_ROOT = os.geteuid() == 0
SLOW = float(os.environ.get("POSTERN_IT_SLOW", "1") or 1)
KEEP = os.environ.get("POSTERN_IT_KEEP", "") not in ("", "0")
TIMEOUT = 10.0 * SLOW  # default socket / wait timeout, seconds

try:
    NOBODY_UID = pwd.getpwnam("nobody").pw_uid
except KeyError:
    NOBODY_UID = 65534
try:
    NOBODY_GID = grp.getgrnam("nogroup").gr_gid
except KeyError:
    try:
        NOBODY_GID = grp.getgrnam("nobody").gr_gid
    except KeyError:
        NOBODY_GID = 65534

# Exact reply texts of the spec.
GREETING = "+OK postern ready"
ERR_TOO_MANY_CONN = "-ERR [SYS/TEMP] too many connections"
ERR_UNKNOWN = "-ERR unknown command"
ERR_STATE = "-ERR command not valid in this state"
ERR_BADARGS = "-ERR bad arguments"
ERR_TOO_LONG = "-ERR line too long"
ERR_INVALID_CHARS = "-ERR invalid characters in command"
ERR_TOO_MANY_ERRORS = "-ERR too many errors, closing"
ERR_TLS_REQUIRED = "-ERR [AUTH] TLS required for plaintext login"
ERR_BAD_LOGIN = "-ERR [AUTH] invalid user name or password"
ERR_TOO_MANY_FAILURES = "-ERR [AUTH] too many failures, closing"
ERR_USER_FIRST = "-ERR USER first"
ERR_IN_USE = "-ERR [IN-USE] mailbox in use by another session"
ERR_SYS_TEMP = "-ERR [SYS/TEMP] temporary failure, try again later"
ERR_NO_SUCH = "-ERR no such message"
ERR_DELETED = "-ERR message already deleted"
ERR_IDLE = "-ERR idle timeout, closing"
ERR_NOT_REMOVED = "-ERR [SYS/TEMP] some deleted messages were not removed"

SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)"
    r"|runtime error: |SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer")

_servers = []       # every Server made by this process, for logs at exit
_tmpdirs = []


def require_env():
    """Fails loudly (exit 1) when meson's environment is missing."""
    missing = [n for n, v in (("POSTERN_BIN", BIN),
                              ("POSTERN_MODULES_DIR", MODULES_DIR))
               if not v]
    if missing:
        sys.stderr.write("postern integration tests: %s not set "
                         "(run through meson test)\n" % ", ".join(missing))
        sys.exit(1)
    if not os.access(BIN, os.X_OK):
        sys.stderr.write("postern integration tests: POSTERN_BIN=%s is "
                         "not an executable\n" % BIN)
        sys.exit(1)


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                      socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port, host="127.0.0.1"):
    """True when some socket listens on host:port (from /proc/net/tcp or
    tcp6, so no probe connection disturbs the daemon's counters or
    logs)."""
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host)
        want_ip = "".join("".join("%02X" % b for b in reversed(raw[i:i + 4]))
                          for i in range(0, 16, 4))
        table, any_ip = "/proc/net/tcp6", "0" * 32
    else:
        want_ip = "".join("%02X" % int(b) for b in reversed(host.split(".")))
        table, any_ip = "/proc/net/tcp", "00000000"
    want = {"%s:%04X" % (want_ip, port), "%s:%04X" % (any_ip, port)}
    try:
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and parts[1] in want:
                    return True
    except OSError:
        pass
    return False


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


_hash_cache = {}


def hash_password(pw, scheme="sha512", salt="postern1"):
    key = (pw, scheme, salt)
    if key in _hash_cache:
        return _hash_cache[key]
    if scheme == "plain":
        h = "{PLAIN}" + pw
    elif scheme in ("sha512", "sha256"):
        flag = "-6" if scheme == "sha512" else "-5"
        h = subprocess.run(["openssl", "passwd", flag, "-salt", salt, pw],
                           check=True, capture_output=True,
                           text=True).stdout.strip()
    elif scheme == "yescrypt":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt  # deprecated, still in 3.11
        h = crypt.crypt(pw, "$y$j9T$" + (salt * 4)[:16])
        if not h or not h.startswith("$y$"):
            raise unittest.SkipTest("no yescrypt in this libcrypt")
    else:
        raise ValueError(scheme)
    _hash_cache[key] = h
    return h


def to_wire(data):
    """Bytes RETR sends for a stored message, before dot-stuffing: LF and
    CRLF line ends become CRLF, and a CRLF is appended when the message
    does not end in a newline. (An empty message is b"" here; tests accept
    b"\\r\\n" for it too.)"""
    if not data:
        return b""
    out = re.sub(rb"\r?\n", b"\r\n", data)
    if not data.endswith(b"\n"):
        out += b"\r\n"
    return out


def wire_lines(wire):
    """The lines of wire bytes (without their CRLF)."""
    if not wire:
        return []
    assert wire.endswith(b"\r\n")
    return wire[:-2].split(b"\r\n")


def expected_top(data, k):
    """Bytes TOP n k sends (undotted): header, blank line, k body lines."""
    lines = wire_lines(to_wire(data))
    try:
        h = lines.index(b"")
    except ValueError:
        return to_wire(data)
    sel = lines[:h + 1] + lines[h + 1:h + 1 + k]
    return b"".join(line + b"\r\n" for line in sel)


def chown_tree(path, uid=None, gid=None):
    uid = NOBODY_UID if uid is None else uid
    gid = NOBODY_GID if gid is None else gid
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


def conf_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(conf_value(x) for x in v) + " ]"
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, conf_value(x))
                               for k, x in v.items()) + " }"
    raise TypeError(v)


def conf_group_list(entries):
    """A libconfig list of groups on ONE line: ( { a = 1; }, { ... } )."""
    return "( " + ", ".join(conf_value(e) for e in entries) + " )"


class Msg:
    def __init__(self, data, path):
        self.data = data
        self.path = path

    @property
    def wire(self):
        return to_wire(self.data)

    def exists(self):
        return os.path.exists(self.path)


class User:
    """A passwd-file user. uid/gid None: empty fields. mail: the
    `mail=` extra field (e.g. "maildir:/x/%u"); home: True means
    <tree>/home/<name>."""

    def __init__(self, name, password, messages=(), scheme="sha512",
                 uid=None, gid=None, home=True, mail=None, extra="",
                 maildir=None):
        self.name = name
        self.password = password
        self.initial = list(messages)
        self.scheme = scheme
        self.uid = uid
        self.gid = gid
        self.home = home
        self.mail = mail
        self.extra = extra
        self.maildir = maildir  # filled in by Server
        self.msgs = []          # Msg, in delivery order


class Server:
    """One postern daemon with its own temporary tree.

    users: list of User. server: dict merged into the server group.
    commands: list of command modules. listen: list of listen dicts
    (default one `pop3` entry on a free port). drop_user: when root, put
    user = "nobody" in the server group and chown the tree to nobody.
    storage: storage group (default maildir, path "~/Maildir").
    """

    seq = 0

    def __init__(self, users=(), server=None, commands=("top", "uidl"),
                 listen=None, drop_user=True, storage=None, auth=None,
                 extra_conf="", name="postern", env_unset=(),
                 env_set=None):
        self.tmp = tempfile.mkdtemp(prefix="postern-it-")
        os.chmod(self.tmp, 0o755)
        _tmpdirs.append(self.tmp)
        _servers.append(self)
        self.name = name
        self.port = listen[0]["port"] if listen else free_port()
        self.listen = listen if listen is not None else [
            {"name": "pop3", "address": "127.0.0.1", "port": self.port}]
        self.drop_user = drop_user and IS_ROOT
        self.server_opts = {
            "auth_failure_delay_ms": 50,
            "max_sessions": 200,
            "max_sessions_per_ip": 100,
            "log_level": "info",
        }
        if self.drop_user:
            self.server_opts = {"user": "nobody", **self.server_opts}
        self.server_opts.update(server or {})
        self.commands = list(commands) if commands is not None else None
        self.users = {}
        self.passwd_path = os.path.join(self.tmp, "users")
        self.conf_path = os.path.join(self.tmp, "postern.conf")
        self.log_path = os.path.join(self.tmp, "postern.log")
        self.storage = storage or [{"module": "maildir",
                                    "path": "~/Maildir"}]
        self.auth = auth or [{"module": "passwd", "file": self.passwd_path}]
        self.extra_conf = extra_conf
        self.env_unset = tuple(env_unset)
        self.env_set = dict(env_set or {})
        self.proc = None
        self.logf = None
        self.stopped_leftovers = []
        for u in users:
            self.add_user(u)
        self.write_passwd()
        self.write_conf()

    # ---- the tree ------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def add_user(self, u):
        if u.home is True:
            u.home = self.path("home", u.name)
        if u.maildir is None:
            if u.mail and u.mail.startswith("maildir:"):
                u.maildir = u.mail[len("maildir:"):].replace("%u", u.name)
            else:
                u.maildir = os.path.join(u.home, "Maildir")
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(u.maildir, d), exist_ok=True)
        self.users[u.name] = u
        for m in u.initial:
            if isinstance(m, tuple):
                self.add_message(u.name, m[0], **m[1])
            else:
                self.add_message(u.name, m)
        self._fix_owner(u)

    def _fix_owner(self, u):
        if not IS_ROOT:
            return
        if self.drop_user:
            chown_tree(self.tmp)
            return
        # Root daemon without a daemon user: each user's tree belongs to
        # the user's uid/gid (nobody when not given).
        uid, gid = self._owner(u)
        chown_tree(u.home if u.home else u.maildir, uid, gid)

    def _owner(self, u):
        if self.drop_user:
            return NOBODY_UID, NOBODY_GID
        uid = NOBODY_UID if u.uid in (None, "") else int(u.uid)
        gid = NOBODY_GID if u.gid in (None, "") else int(u.gid)
        return uid, gid

    def add_message(self, user, data, w=None, subdir="cur", flags="S",
                    name=None, mtime=None):
        """Writes a message into the user's Maildir. w: put ,W=<wire
        size> in the name (default: every other message)."""
        u = self.users[user]
        Server.seq += 1
        n = Server.seq
        if w is None:
            w = n % 2 == 0
        if name is None:
            base = "%d.M%dP%d.postern-test,S=%d" % (
                1700000000 + n, n, os.getpid(), len(data))
            if w:
                base += ",W=%d" % len(to_wire(data))
            name = base + (":2," + flags if subdir == "cur" else "")
        p = os.path.join(u.maildir, subdir, name)
        tmp = os.path.join(u.maildir, "tmp", name.split(":")[0])
        with open(tmp, "wb") as f:
            f.write(data)
        if mtime is None:
            mtime = 1700000000 + n
        os.utime(tmp, (mtime, mtime))
        os.rename(tmp, p)
        if IS_ROOT:
            os.chown(p, *self._owner(u))
        m = Msg(data, p)
        u.msgs.append(m)
        return m

    def passwd_line(self, u):
        h = u.password if u.scheme == "raw" else hash_password(
            u.password, u.scheme, salt=("s" + u.name)[:16])
        extra = u.extra
        if u.mail:
            extra = ("mail=" + u.mail + " " + extra).strip()
        uid = "" if u.uid is None else str(u.uid)
        gid = "" if u.gid is None else str(u.gid)
        return "%s:%s:%s:%s::%s::%s" % (u.name, h, uid, gid,
                                          u.home or "", extra)

    def write_passwd(self, path=None, users=None):
        path = path or self.passwd_path
        users = self.users.values() if users is None else users
        with open(path, "w") as f:
            f.write("# postern integration test users\n\n")
            for u in users:
                f.write(self.passwd_line(u) + "\n")
        os.chmod(path, 0o600)
        if IS_ROOT and self.drop_user:
            os.chown(path, NOBODY_UID, NOBODY_GID)

    def conf_text(self, server=None, commands=None, auth=None,
                  listen=None, storage=None, extra=None,
                  omit_commands=False):
        """The config, one setting per line (tests count lines)."""
        opts = dict(self.server_opts)
        opts.update(server or {})
        lines = ["# postern integration test config", "server = {"]
        for k, v in opts.items():
            if v is None:
                continue
            lines.append("  %s = %s;" % (k, conf_value(v)))
        lines.append("};")
        lines.append("listen = %s;" % conf_group_list(
            listen if listen is not None else self.listen))
        lines.append("modules_dir = %s;" % conf_value(MODULES_DIR))
        lines.append("auth = %s;" % conf_group_list(
            auth if auth is not None else self.auth))
        lines.append("storage = %s;" % conf_group_list(
            storage if storage is not None else self.storage))
        cmds = commands if commands is not None else self.commands
        if cmds is not None and not omit_commands:
            lines.append("commands = %s;" % conf_value(list(cmds)))
        ex = self.extra_conf if extra is None else extra
        if ex:
            lines.append(ex)
        return "\n".join(lines) + "\n"

    def write_conf(self, text=None, path=None):
        path = path or self.conf_path
        with open(path, "w") as f:
            f.write(text if text is not None else self.conf_text())
        if IS_ROOT and self.drop_user:
            os.chown(path, NOBODY_UID, NOBODY_GID)
        return path

    # ---- the daemon ----------------------------------------------------
    def env(self):
        env = dict(os.environ)
        for k in ("JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID",
                  "LISTEN_FDNAMES", "NOTIFY_SOCKET") + self.env_unset:
            env.pop(k, None)
        env.update(self.env_set)
        return env

    def start(self, argv=None, wait=True):
        """Starts BIN -c conf (or argv), stderr+stdout to the log."""
        require_env()
        if self.proc is not None:
            raise RuntimeError("already started")
        self.logf = open(self.log_path, "ab")
        if argv is None:
            argv = [BIN, "-c", self.conf_path]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf,
                                     stderr=subprocess.STDOUT,
                                     env=self.env(), close_fds=True)
        self.started_at = time.monotonic()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=None):
        timeout = timeout or TIMEOUT
        deadline = time.monotonic() + timeout
        ports = [(e.get("address", "0.0.0.0"), e.get("port", 110))
                 for e in self.listen]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    "postern exited with %s at start-up; log:\n%s"
                    % (self.proc.returncode, self.log_tail()))
            if all(listening(p, a) for a, p in ports):
                break
            time.sleep(0.02)
        else:
            raise AssertionError(
                "postern did not listen on %s within %.0fs; log:\n%s"
                % (ports, timeout, self.log_tail()))
        # The daemon binds before it has set up its signal handling and
        # worker pool; its "ready" line says it is done (tolerated when
        # absent, after a short wait).
        ready = re.compile(r"(?m)^(?:<\d>)?ready\b")
        deadline = time.monotonic() + 3 * SLOW
        while time.monotonic() < deadline:
            if ready.search(self.log()):
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    "postern exited with %s at start-up; log:\n%s"
                    % (self.proc.returncode, self.log_tail()))
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def descendants(self, pid=None):
        pid = pid or self.proc.pid
        out = []
        todo = [pid]
        while todo:
            p = todo.pop()
            try:
                for t in os.listdir("/proc/%d/task" % p):
                    with open("/proc/%d/task/%s/children" % (p, t)) as f:
                        kids = [int(x) for x in f.read().split()]
                    out += kids
                    todo += kids
            except (OSError, ValueError):
                pass
        return out

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=None):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status.
        Workers still alive 2s after the master exited are killed by pid
        and remembered in self.stopped_leftovers."""
        if self.proc is None:
            return None
        timeout = timeout or 5 * SLOW
        kids = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 2 * SLOW
        left = [k for k in kids if _alive_child_of_us(k)]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [k for k in left if _alive_child_of_us(k)]
        for k in left:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        self.stopped_leftovers = left
        if self.logf:
            self.logf.close()
            self.logf = None
        rc = self.proc.returncode
        self.last_rc = rc
        self.proc = None
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- the log -------------------------------------------------------
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=80):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=None, start=0, count=1):
        """Waits until regex pattern matches (count times) in the log
        after offset start; returns the last match."""
        timeout = timeout or TIMEOUT
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            ms = list(rx.finditer(self.log(), start))
            if len(ms) >= count:
                return ms[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    "log never matched %r (x%d) within %.1fs; log:\n%s"
                    % (pattern, count, timeout, self.log_tail()))
            time.sleep(0.02)

    def log_size(self):
        return len(self.log())

    def sanitizer_reports(self):
        return [l for l in self.log().splitlines() if SANITIZER_RE.search(l)]

    def worker_pid_of_login(self, user, start=0, timeout=None):
        m = self.wait_log(r"login: user=%s .*pid=(\d+)" % re.escape(user),
                          timeout=timeout, start=start)
        return int(m.group(1))

    # ---- clients -------------------------------------------------------
    def connect(self, **kw):
        kw.setdefault("port", self.port)
        return Pop3(**kw)

    def login(self, user, password=None, **kw):
        """Connects, logs in, returns (client, PASS reply)."""
        c = self.connect(**kw)
        if password is None:
            password = self.users[user].password
        r = c.cmd("USER " + user)
        if not r.startswith("+OK"):
            return c, r
        return c, c.cmd("PASS " + password)

    def mailbox_totals(self, user):
        ms = [m for m in self.users[user].msgs if m.exists()]
        return len(ms), sum(len(m.wire) for m in ms)


def proc_field(pid, name, key):
    """The number after "key:" in /proc/PID/name (status, smaps_rollup)."""
    with open("/proc/%d/%s" % (pid, name)) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/%s" % (key, pid, name))


def _alive_child_of_us(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    state = st.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


class Closed(Exception):
    pass


class Pop3:
    """Raw POP3 client keeping exact bytes."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=None,
                 greet=True):
        self.timeout = timeout or TIMEOUT
        self.sock = socket.create_connection(
            (host, port), self.timeout,
            source_address=(source, 0) if source else None)
        self.buf = bytearray()
        self.pos = 0
        self.eof = False
        self.greeting = self.line() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        if self.eof:
            raise Closed("connection closed by server")
        self.sock.settimeout(timeout or self.timeout)
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            raise Closed("connection closed by server")
        if self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += d

    def rawline(self, timeout=None):
        """One line as bytes without its CRLF."""
        scan = self.pos
        while True:
            i = self.buf.find(b"\r\n", scan)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            rel = max(0, len(self.buf) - 1 - self.pos)
            self._fill(timeout)  # may move the buffer's start
            scan = self.pos + rel

    def line(self, timeout=None):
        return self.rawline(timeout).decode("latin-1")

    def cmd(self, text, timeout=None):
        self.send(text + "\r\n")
        return self.line(timeout)

    def multi_lines(self, timeout=None):
        """Rest of a multi-line response: undotted lines (bytes)."""
        out = []
        while True:
            line = self.rawline(timeout)
            if line == b".":
                return out
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)

    def multi_raw(self, timeout=None):
        """Rest of a multi-line response as the undotted wire bytes."""
        return b"".join(l + b"\r\n" for l in self.multi_lines(timeout))

    def multi(self, text, timeout=None):
        """Sends a command; returns (status line, undotted lines as str)
        (lines only when the status is +OK)."""
        st = self.cmd(text, timeout)
        if not st.startswith("+OK"):
            return st, None
        return st, [l.decode("latin-1") for l in self.multi_lines(timeout)]

    def retr(self, n, timeout=None):
        """(status, undotted bytes) of RETR n."""
        st = self.cmd("RETR %d" % n, timeout)
        if not st.startswith("+OK"):
            return st, None
        return st, self.multi_raw(timeout)

    def login(self, user, password):
        r = self.cmd("USER " + user)
        if not r.startswith("+OK"):
            return r
        return self.cmd("PASS " + password)

    def read_until_eof(self, timeout=None):
        """All bytes until the server closes; raises socket.timeout when
        it does not close within timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("server did not close")
            try:
                self._fill(left)
            except Closed:
                break
        data = bytes(self.buf[self.pos:])
        self.pos = len(self.buf)
        return data

    def lines_until_eof(self, timeout=None):
        data = self.read_until_eof(timeout)
        return [l.decode("latin-1") for l in data.split(b"\r\n") if l]

    def is_closed(self, timeout=1.0):
        try:
            self.read_until_eof(timeout)
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class PosternTest(unittest.TestCase):
    """Base class: servers made with self.server() are stopped after the
    test and their logs checked for sanitizer reports; class servers
    (cls.class_server()) after the class."""

    longMessage = True
    _class_servers = []

    @classmethod
    def class_server(cls, *a, start=True, **kw):
        s = Server(*a, **kw)
        if start:
            s.start()
        if "_class_servers" not in cls.__dict__:
            cls._class_servers = []
        cls._class_servers.append(s)
        return s

    @classmethod
    def tearDownClass(cls):
        reports = []
        for s in cls.__dict__.get("_class_servers", []):
            s.stop()
            reports += s.sanitizer_reports()
        if reports:
            raise AssertionError("sanitizer reports in the daemon log:\n"
                                 + "\n".join(reports[:20]))

    def server(self, *a, start=True, **kw):
        s = Server(*a, **kw)
        if start:
            s.start()
        self.addCleanup(self._stop_server, s)
        return s

    def _stop_server(self, s):
        s.stop()
        rep = s.sanitizer_reports()
        if rep:
            raise AssertionError("sanitizer reports in the daemon log:\n"
                                 + "\n".join(rep[:20]))

    def client(self, srv, **kw):
        c = srv.connect(**kw)
        self.addCleanup(c.close)
        return c

    def logged_in(self, srv, user, password=None, **kw):
        # A session an earlier test dropped without QUIT ends when its
        # worker sees EOF; until then the mailbox is (rightly) IN-USE.
        deadline = time.monotonic() + 3 * SLOW
        while True:
            c, r = srv.login(user, password, **kw)
            if "[IN-USE]" not in r or time.monotonic() > deadline:
                break
            c.close()
            time.sleep(0.05)
        self.addCleanup(c.close)
        self.assertTrue(r.startswith("+OK mailbox ready"),
                        "login of %s: %r\nlog:\n%s"
                        % (user, r, srv.log_tail(30)))
        return c

    def assertReply(self, got, want, what=""):
        self.assertEqual(got, want, what)


def _dump_logs():
    for s in _servers:
        if os.path.exists(s.log_path):
            sys.stderr.write("\n===== log of server in %s (port %d) "
                             "=====\n%s\n" % (s.tmp, s.port, s.log_tail(60)))


def _cleanup():
    if KEEP:
        for d in _tmpdirs:
            sys.stderr.write("kept %s\n" % d)
        return
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def main():
    """unittest.main that prints the servers' logs on failure and exits
    77 (meson's skip) when every test was skipped."""
    require_env()
    prog = unittest.main(exit=False, verbosity=2)
    res = prog.result
    for s in _servers:
        if s.proc is not None:
            s.stop()
    if not res.wasSuccessful():
        _dump_logs()
        sys.exit(1)
    if res.testsRun and len(res.skipped) == res.testsRun:
        sys.exit(77)
    sys.exit(0)
