#!/usr/bin/env python3
"""A third party can add a module without touching core/: stage a
`meson install`, build cmd_hello.c against the staged header using only
pkg-config, drop it into the staged module directory, and use its command
through the staged daemon."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ["POSTERN_BUILD_ROOT"]


def run(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          **kw)


def abi_version():
    """MAJOR.MINOR as include/postern/module.h defines them."""
    with open(os.path.join(HERE, "..", "..", "include", "postern",
                           "module.h")) as f:
        text = f.read()
    major = re.search(r"#define POSTERN_ABI_MAJOR (\d+)", text).group(1)
    minor = re.search(r"#define POSTERN_ABI_MINOR (\d+)", text).group(1)
    return f"{major}.{minor}"


class OutOfTreeModule(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stage = tempfile.mkdtemp(prefix="postern-stage-")
        run(["meson", "install", "-C", BUILD, "--destdir", cls.stage,
             "--no-rebuild", "--quiet"])
        for root, dirs, _ in os.walk(cls.stage):  # a nobody daemon reads it
            os.chmod(root, 0o755)
        pcs = glob.glob(cls.stage + "/**/pkgconfig/postern.pc",
                        recursive=True)
        assert len(pcs) == 1, pcs
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]),
                   PKG_CONFIG_SYSROOT_DIR=cls.stage)
        cls.cflags = run(["pkg-config", "--cflags", "postern"],
                         env=env).stdout.split()
        moddir = run(["pkg-config", "--variable=moduledir", "postern"],
                     env=env).stdout.strip()
        # pkgconf applies the sysroot to variables too; pkg-config does not
        cls.moddir = moddir if moddir.startswith(cls.stage) \
            else cls.stage + moddir
        cls.daemon = glob.glob(cls.stage + "/**/sbin/postern",
                               recursive=True)[0]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.stage, ignore_errors=True)

    def build_module(self):
        out = os.path.join(self.moddir, "cmd_hello.so")
        run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC",
             "-shared", "-fvisibility=hidden", *self.cflags,
             "-o", out, os.path.join(HERE, "cmd_hello.c"), "-Wl,-z,defs"])
        return out

    def test_installed_tree(self):
        self.assertTrue(os.path.isfile(self.moddir + "/auth_passwd.so"))
        for h in ("module.h", "api.h", "auth.h", "storage.h", "command.h"):
            self.assertTrue(glob.glob(self.stage + "/**/postern/" + h,
                                      recursive=True), h)
        # the header is all a module needs: -I from pkg-config only
        self.assertTrue(any(f.startswith("-I" + self.stage)
                            for f in self.cflags) or self.cflags == [],
                        self.cflags)

    def test_third_party_command(self):
        self.build_module()
        os.environ["POSTERN_BIN"] = self.daemon
        os.environ["POSTERN_MODULES_DIR"] = self.moddir
        sys.path.insert(0, os.path.join(HERE, "..", "integration"))
        import postern_harness as h

        srv = h.Server(users=[h.User("alice", "pw-alice",
                                     [b"Subject: a\n\nbody\n",
                                      b"Subject: b\n\nxx\n"])],
                       commands=("uidl", "hello"))
        try:
            srv.start()
            listing = run([self.daemon, "--modules", "-c",
                           srv.conf_path]).stdout
            # Its own version 1.0, built against the ABI of our header.
            self.assertRegex(listing, r"command\s+cmd_hello\s+1\.0\s+%s\b"
                             % re.escape(abi_version()))
            c, r = srv.login("alice")
            self.assertTrue(r.startswith("+OK"), r)
            self.assertIn("X-HELLO", c.multi("CAPA")[1])
            self.assertEqual(c.cmd("HELLO"), "+OK hello alice, 2 messages")
            sizes = c.multi("HELLO SIZES")[1]
            self.assertEqual(sizes, ["1 %d" % len(srv.users["alice"]
                                                    .msgs[0].wire),
                                     "2 %d" % len(srv.users["alice"]
                                                    .msgs[1].wire)])
            self.assertTrue(c.cmd("HELLO x y").startswith("-ERR"))
            c.cmd("QUIT")
        finally:
            srv.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
