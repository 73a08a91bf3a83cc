#!/usr/bin/env python3
"""postern -t / -n / --modules / --module-help, config errors with
FILE:LINE:, and SIGHUP reloads (valid and invalid)."""

import os
import re
import signal
import subprocess
import time

import postern_harness as h
from postern_harness import PosternTest, User


def run(*args, timeout=20):
    p = subprocess.run([h.BIN] + list(args), capture_output=True, text=True,
                       timeout=timeout * h.SLOW, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


class ConfigCheckTest(PosternTest):
    @classmethod
    def setUpClass(cls):
        # a tree with a passwd-file; never started
        cls.srv = h.Server([User("alice", "pw")])
        cls.good = cls.srv.conf_text(server={"max_sessions": 77})
        cls.n = 0

    def write(self, text):
        ConfigCheckTest.n += 1
        return self.srv.write_conf(text, self.srv.path("c%d.conf" % self.n))

    def lines(self):
        return self.good.splitlines()

    def line_no(self, lines, prefix):
        for i, l in enumerate(lines):
            if l.strip().startswith(prefix):
                return i + 1
        raise AssertionError("no line starts with %r" % prefix)

    def check_bad(self, lines, line, *words):
        """lines: the config; line: the 1-based line the error must
        name; words: what the message should mention."""
        path = self.write("\n".join(lines) + "\n")
        rc, out, err = run("-t", "-c", path)
        self.assertEqual(rc, 1, "exit status of -t; stderr:\n" + err)
        self.assertIn("%s:%d:" % (path, line), err,
                      "want %s:%d: in stderr" % (os.path.basename(path),
                                                 line))
        for w in words:
            self.assertIn(w, err)
        return err

    def replace(self, prefix, new):
        ls = self.lines()
        i = self.line_no(ls, prefix)
        ls[i - 1] = new
        return ls, i

    def insert_server(self, new):
        """Puts line new first in the server group (dropping the base
        config's line for the same key); returns (lines, its number)."""
        key = new.split("=")[0].strip()
        ls = [l for l in self.lines()
              if not l.startswith("  %s = " % key)]
        i = self.line_no(ls, "server = {")
        ls.insert(i, new)
        return ls, i + 1

    def test_good_config(self):
        path = self.write(self.good)
        rc, out, err = run("-t", "-c", path)
        self.assertEqual(rc, 0, err)
        self.assertNotRegex(err, r"\.conf:\d+:")

    def test_unknown_server_key(self):
        ls, n = self.insert_server("  bogus_key = 1;")
        self.check_bad(ls, n, "bogus_key")

    def test_wrong_type(self):
        ls, n = self.insert_server('  idle_timeout = "ten";')
        self.check_bad(ls, n, "idle_timeout")

    def test_bad_log_level(self):
        ls, n = self.insert_server('  log_level = "loud";')
        self.check_bad(ls, n, "log_level")

    def test_bad_network(self):
        ls, n = self.insert_server(
            '  plaintext_auth_networks = [ "300.1.1.1/8" ];')
        self.check_bad(ls, n)

    def test_unknown_top_level_key(self):
        ls = self.lines() + ["bogus_group = { a = 1; };"]
        self.check_bad(ls, len(ls), "bogus_group")

    def test_syntax_error(self):
        ls, n = self.insert_server("  max_protocol_errors = = 5;")
        path = self.write("\n".join(ls) + "\n")
        rc, out, err = run("-t", "-c", path)
        self.assertEqual(rc, 1)
        self.assertRegex(err, re.escape(path) + r":(%d|%d):"
                         % (n, n + 1))

    def test_missing_required_module_key(self):
        ls, n = self.replace("auth =", 'auth = ( { module = "passwd"; } );')
        self.check_bad(ls, n, "file")

    def test_unknown_module_key(self):
        ls, n = self.replace("auth =", 'auth = ( { module = "passwd"; '
                             'file = "%s"; colour = "blue"; } );'
                             % self.srv.passwd_path)
        self.check_bad(ls, n, "colour")

    def test_module_setting_wrong_type(self):
        ls, n = self.replace("storage =", 'storage = ( { module = '
                             '"maildir"; path = "~/Maildir"; size_cache = '
                             '"yes"; } );')
        self.check_bad(ls, n, "size_cache")

    def test_missing_command_module(self):
        ls, n = self.replace("commands =", 'commands = [ "top", "nosuch" ];')
        self.check_bad(ls, n, "nosuch")

    def test_unknown_storage_module(self):
        ls, n = self.replace("storage =", 'storage = ( { module = '
                             '"nosuch"; path = "~/x"; } );')
        self.check_bad(ls, n, "nosuch")

    def test_unknown_auth_module(self):
        ls, n = self.replace("auth =", 'auth = ( { module = "nosuch"; } );')
        self.check_bad(ls, n, "nosuch")

    def test_bad_listen_port(self):
        for port in ("70000", "-1", '"pop3"'):
            ls, n = self.replace("listen =", 'listen = ( { name = "pop3"; '
                                 'address = "127.0.0.1"; port = %s; } );'
                                 % port)
            self.check_bad(ls, n)

    def test_bad_listen_address(self):
        ls, n = self.replace("listen =", 'listen = ( { name = "pop3"; '
                             'address = "not an address"; port = 1110; } );')
        self.check_bad(ls, n)

    def test_missing_modules_dir_entry(self):
        ls, n = self.replace("modules_dir =",
                             'modules_dir = "%s";' % self.srv.path("nodir"))
        path = self.write("\n".join(ls) + "\n")
        rc, out, err = run("-t", "-c", path)
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, re.escape(path) + r":\d+:")

    def test_missing_auth_section(self):
        ls = [l for l in self.lines() if not l.startswith("auth =")]
        path = self.write("\n".join(ls) + "\n")
        rc, out, err = run("-t", "-c", path)
        self.assertEqual(rc, 1, err)
        self.assertIn(path + ":", err)
        self.assertIn("auth", err)

    def test_unknown_daemon_user(self):
        ls = self.lines()
        ls = [l for l in ls if not l.strip().startswith("user =")]
        i = self.line_no(ls, "server = {") + 1
        ls.insert(i, '  user = "no-such-user-postern";')
        self.check_bad(ls, i + 1, "no-such-user-postern")

    def test_several_problems_all_reported(self):
        ls = self.lines()
        i = self.line_no(ls, "server = {") + 1
        ls.insert(i, "  bogus_one = 1;")
        ls.insert(i + 1, '  max_protocol_errors = "many";')
        j = self.line_no(ls, "commands =")
        ls[j - 1] = 'commands = [ "nosuch" ];'
        err = self.check_bad(ls, i + 1)
        path = self.srv.path("c%d.conf" % self.n)
        self.assertIn("%s:%d:" % (path, i + 2), err)
        self.assertIn("%s:%d:" % (path, j), err)

    def test_missing_config_file(self):
        rc, out, err = run("-t", "-c", self.srv.path("nonexistent.conf"))
        self.assertEqual(rc, 1)
        self.assertIn("nonexistent.conf", err)

    def test_print_effective_config(self):
        path = self.write(self.good)
        rc, out, err = run("-n", "-c", path)
        self.assertEqual(rc, 0, err)
        for rx in (r"idle_timeout\s*=\s*600\s*;", r"login_timeout\s*=\s*60;",
                   r"max_sessions\s*=\s*77\s*;",
                   r"max_auth_failures\s*=\s*3\s*;",
                   r"max_protocol_errors\s*=\s*10\s*;",
                   r'file\s*=\s*"%s"' % re.escape(self.srv.passwd_path),
                   r'commands\s*=\s*\[\s*"top",\s*"uidl"\s*\]'):
            self.assertRegex(out, rx)
        # the printed config is itself a valid config
        p2 = self.write(out)
        rc, _, err = run("-t", "-c", p2)
        self.assertEqual(rc, 0, err)

    def test_modules_list(self):
        path = self.write(self.good)
        rc, out, err = run("--modules", "-c", path)
        self.assertEqual(rc, 0, err)
        for kind, name in (("auth", "auth_passwd"),
                           ("storage", "storage_maildir"),
                           ("command", "cmd_top"), ("command", "cmd_uidl")):
            self.assertRegex(out, r"(?m)^%s\s+%s\s+\S+\s+1\.\d+\s*$"
                             % (kind, name))

    def test_module_help(self):
        path = self.write(self.good)
        for name in ("passwd", "auth_passwd"):
            rc, out, err = run("--module-help", name, "-c", path)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"(?m)^file\s+string\b")
        rc, out, err = run("--module-help", "maildir", "-c", path)
        self.assertEqual(rc, 0, err)
        rc, out, err = run("--module-help", "nosuch", "-c", path)
        self.assertNotEqual(rc, 0)
        self.assertIn("nosuch", err)

    def test_check_binds_nothing(self):
        path = self.write(self.good)
        p = subprocess.Popen([h.BIN, "-t", "-c", path],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.assertEqual(p.wait(20), 0)
        self.assertFalse(h.listening(self.srv.port))


class ReloadTest(PosternTest):
    def test_sighup_valid_config(self):
        srv = self.server([User("alice", "pw-alice", [b"Subject: a\n\na\n"])])
        old = self.logged_in(srv, "alice", "pw-alice")
        c = self.client(srv)
        st, caps = c.multi("CAPA")
        self.assertIn("TOP", caps)
        # new passwd-file at a new path, with a new user; TOP dropped
        carol = User("carol", "pw-carol", [b"Subject: c\n\nc\n"])
        srv.add_user(carol)
        new_passwd = srv.path("users-new")
        srv.write_passwd(new_passwd, [srv.users["alice"], carol])
        srv.write_conf(srv.conf_text(
            commands=["uidl"],
            auth=[{"module": "passwd", "file": new_passwd}]))
        srv.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5 * h.SLOW
        while True:
            c = self.client(srv)
            st, caps = c.multi("CAPA")
            c.close()
            if "TOP" not in caps or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertNotIn("TOP", caps, "CAPA unchanged after SIGHUP")
        self.assertIn("UIDL", caps)
        c = self.logged_in(srv, "carol", "pw-carol")
        self.assertTrue(c.cmd("STAT").startswith("+OK 1 "))
        self.assertEqual(c.cmd("TOP 1 0"), h.ERR_UNKNOWN)
        self.assertTrue(c.cmd("UIDL 1").startswith("+OK 1 "))
        # the session from before the reload goes on
        self.assertEqual(old.cmd("NOOP"), "+OK")
        self.assertEqual(old.cmd("QUIT"), "+OK bye, 0 messages deleted")
        self.assertTrue(srv.alive())

    def test_sighup_right_after_bind(self):
        # A reload (logrotate, systemctl reload) that arrives as soon as
        # the port is bound must not kill the daemon: signals have to be
        # blocked before the listeners open, not after.
        for i in range(5):
            srv = h.Server([User("alice", "pw-alice")])
            self.addCleanup(self._stop_server, srv)
            srv.start(wait=False)
            deadline = time.monotonic() + h.TIMEOUT
            while not h.listening(srv.port):
                self.assertIsNone(srv.proc.poll(), srv.log_tail())
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.0005)
            srv.signal(signal.SIGHUP)
            time.sleep(0.3)
            self.assertTrue(srv.alive(), "round %d: SIGHUP just after bind "
                            "killed the daemon (exit %s); log:\n%s"
                            % (i, srv.proc.returncode, srv.log_tail()))
            srv.stop()

    def test_sighup_invalid_config_keeps_serving(self):
        srv = self.server([User("alice", "pw-alice", [b"Subject: a\n\na\n"])])
        good = srv.conf_text()
        ls = good.splitlines()
        i = [n for n, l in enumerate(ls) if l.startswith("server = {")][0]
        ls.insert(i + 1, "  bogus_reload_key = 1;")
        start = srv.log_size()
        srv.write_conf("\n".join(ls) + "\n")
        srv.signal(signal.SIGHUP)
        srv.wait_log(re.escape(srv.conf_path) + r":%d:" % (i + 2),
                     start=start)
        time.sleep(0.2)
        self.assertTrue(srv.alive(), "daemon died on an invalid reload")
        c = self.logged_in(srv, "alice", "pw-alice")
        st, caps = c.multi("CAPA")
        self.assertIn("TOP", caps)
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        # a missing module on reload: also kept
        start = srv.log_size()
        srv.write_conf(srv.conf_text(commands=["top", "nosuch"]))
        srv.signal(signal.SIGHUP)
        srv.wait_log(re.escape(srv.conf_path) + r":\d+:.*nosuch",
                     start=start)
        time.sleep(0.2)
        c = self.logged_in(srv, "alice", "pw-alice")
        self.assertEqual(c.cmd("QUIT"), "+OK bye, 0 messages deleted")
        # and a later valid reload still works
        srv.write_conf(srv.conf_text(commands=["uidl"]))
        srv.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5 * h.SLOW
        while True:
            c = self.client(srv)
            st, caps = c.multi("CAPA")
            c.close()
            if "TOP" not in caps or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertNotIn("TOP", caps)


if __name__ == "__main__":
    h.main()
