"""Deterministic test mail for scripts/bench.

Every server gets the same messages: Maildirs for postern and Dovecot
(one file per message, LF line endings, as an MTA delivers them) and an
mbox spool file per user for popa3d. The wire form a client must receive
(CRLF line endings, before dot-stuffing) is kept in memory by the runner
to check what each server delivers.

Each message starts with an "X-Bench-Id:" header naming it, so a server
may list the messages in any order. Bodies mix text paragraphs, lines
that start with a dot (dot-stuffing), long base64 blocks and a few empty
lines; no line starts with "From " (mbox would have to quote it).
"""

import email.utils
import os
import random

BIG_MESSAGES = 200
BIG_TOTAL = 8_500_000  # wire bytes (CRLF) of the download mailbox
SMALL_MESSAGES = 10

_WORDS = (
    "the of and to in is that it for on with as was at by be this from "
    "or an are have not but had they which you were his her one all "
    "their there been has more will would when who what so if about "
    "mail server message inbox folder queue delivery header body "
    "attachment invoice meeting report quarterly budget schedule "
    "project review draft final update notes minutes agenda").split()

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _text_lines(rng, n):
    out = []
    for _ in range(n):
        k = rng.random()
        if k < 0.04:
            out.append("")
        elif k < 0.07:
            # Lines a POP3 server must dot-stuff.
            out.append(rng.choice([".", "..", ".hidden line", "... and so on",
                                   ".signature"]))
        else:
            words = []
            width = rng.randint(20, 76)
            while sum(len(w) + 1 for w in words) < width:
                words.append(rng.choice(_WORDS))
            line = " ".join(words)
            if line.startswith("from "):
                line = "so " + line
            out.append(line[:78])
    return out


def _b64_lines(rng, nbytes):
    lines = []
    total = 0
    while total < nbytes:
        line = "".join(rng.choice(_B64) for _ in range(76))
        lines.append(line)
        total += 78
    return lines


def _body(rng, target):
    """Body lines of roughly target wire bytes."""
    lines = []
    size = 0
    text_part = target if target < 6000 else int(target * rng.uniform(0.2, 0.6))
    while size < text_part:
        chunk = _text_lines(rng, 20)
        lines.extend(chunk)
        size += sum(len(x) + 2 for x in chunk)
    if size < target:
        lines.append("")
        lines.append("--bench-boundary")
        lines.append("Content-Type: application/octet-stream")
        lines.append("Content-Transfer-Encoding: base64")
        lines.append("")
        size += 80
        # base64 generation is slow in pure Python: repeat a block.
        block = _b64_lines(rng, 64 * 78)
        need = target - size
        while need > 0:
            for ln in block:
                lines.append(ln)
                need -= 78
                if need <= 0:
                    break
        lines.append("--bench-boundary--")
    return lines


def _message(rng, bench_id, user, seq, body_target):
    date = email.utils.formatdate(1767225600 + seq * 3607)  # fixed dates
    hdr = [
        f"X-Bench-Id: {bench_id}",
        "Return-Path: <sender@bench.invalid>",
        "Received: from relay.bench.invalid (relay.bench.invalid [192.0.2.1])",
        "\tby mx.bench.invalid with ESMTPS id 4Bench; "
        "Thu, 1 Jan 2026 00:00:00 +0000",
        f"From: Sender {seq:03d} <sender{seq:03d}@bench.invalid>",
        f"To: {user} <{user}@bench.invalid>",
        f"Subject: bench message {seq:03d} for {user}",
        f"Date: {date}",
        f"Message-ID: <{bench_id}@bench.invalid>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=bench-boundary",
    ]
    lines = hdr + [""] + _body(rng, body_target)
    return ("\n".join(lines) + "\n").encode()


def wire(raw):
    """The bytes a client receives for a stored (LF) message."""
    return raw.replace(b"\n", b"\r\n")


def stuffed_len(raw):
    """Wire length with dot-stuffing, as popload counts RETR bodies."""
    w = wire(raw)
    extra = w.count(b"\r\n.") + (1 if w.startswith(b".") else 0)
    return len(w) + extra


def big_sizes(rng):
    """200 body targets summing to about BIG_TOTAL: mostly small mail and
    a few large attachments, like a real inbox."""
    raw = []
    for _ in range(BIG_MESSAGES):
        x = rng.lognormvariate(9.2, 1.1)  # median ~10 KB
        raw.append(min(max(x, 1500), 900_000))
    scale = (BIG_TOTAL - BIG_MESSAGES * 700) / sum(raw)
    return [int(x * scale) for x in raw]


def rename(msgs, old, new):
    """The same messages for another user of a name of the same length."""
    assert len(old) == len(new)
    o, n = old.encode(), new.encode()
    return [(bid.replace(old, new), raw.replace(o, n)) for bid, raw in msgs]


def build_big(user, seed=1):
    """The 200 messages of a download user. The bodies are the same for
    every user (same seed), the headers name the user, so users whose
    names have the same length have the same sizes (see rename)."""
    rng = random.Random(seed)
    sizes = big_sizes(rng)
    msgs = []
    for seq, target in enumerate(sizes, 1):
        brng = random.Random(seed * 1000 + seq)
        msgs.append((f"{user}-{seq:03d}",
                     _message(brng, f"{user}-{seq:03d}", user, seq, target)))
    # Pad the last message so the wire total is BIG_TOTAL (to within a
    # couple of bytes when the generated mail is already a little over).
    delta = BIG_TOTAL - sum(len(wire(m)) for _, m in msgs)
    if delta >= 3:
        n = -(-delta // 72)
        letters = delta - 2 * n
        pad = b"".join(b"x" * (letters // n + (1 if i < letters % n else 0))
                       + b"\n" for i in range(n))
        bid, last = msgs[-1]
        msgs[-1] = (bid, last + pad)
    return msgs


def build_small(user, seed=2):
    rng = random.Random(seed)
    msgs = []
    for seq in range(1, SMALL_MESSAGES + 1):
        target = rng.randint(800, 5000)
        brng = random.Random(seed * 1000 + seq)
        bid = f"{user}-{seq:03d}"
        msgs.append((bid, _message(brng, bid, user, seq, target)))
    return msgs


def write_maildir(path, msgs, uid, gid):
    """Messages in cur/ (already seen by a client), Postfix-style names
    without ,S= or ,W= so that each server measures sizes itself."""
    for d in ("", "/cur", "/new", "/tmp"):
        os.makedirs(path + d, exist_ok=True)
        os.chown(path + d, uid, gid)
        os.chmod(path + d, 0o700)
    for i, (_, raw) in enumerate(msgs):
        t = 1767225600 + i * 3607
        name = f"{path}/cur/{t}.M{100000 + i}P{4242 + i}.bench.invalid:2,S"
        with open(name, "wb") as f:
            f.write(raw)
        os.chown(name, uid, gid)
        os.chmod(name, 0o600)
        os.utime(name, (t, t))
    for d in ("", "/cur", "/new", "/tmp"):
        os.chown(path + d, uid, gid)


def mbox_bytes(msgs):
    """An mbox (mboxo, as popa3d reads it): a From_ line before each
    message, a blank line after it."""
    out = []
    for i, (_, raw) in enumerate(msgs):
        out.append(b"From sender@bench.invalid Thu Jan  1 00:00:%02d 2026\n"
                   % (i % 60))
        out.append(raw)
        out.append(b"\n")
    return b"".join(out)
