"""DKIM signing cost per message, against what sending a message costs, in one run.

    python bench/dkim_cost.py                      # 2,000 subscribers, 2048- and 1024-bit keys
    python bench/dkim_cost.py --subscribers 10000 --no-send

On the sample issue (the bundled HF feed, as bench/send_speed.py sends it) it times, per
message:

- ``build``: one subscriber's message from the issue (``IssueMailer.message``), the
  baseline the brief names (~0.15 ms);
- ``dkimpy``: ``dkim.sign()`` as dkimpy offers it (pure-Python RSA, key parsed per call);
- ``ours``: ``newsletter.delivery.dkim.DkimSigner.sign`` (OpenSSL RSA, key loaded once),
  and its two parts: the RSA signature alone and the body hash alone;
- ``send``: the wall-clock cost of one message in ``run_send`` at 0 ms latency against an
  aiosmtpd sink (bench/send_speed.py's ``run_ours``, 8 connections x 200), the figure the
  signing cost is compared with (target: below 10 %).

Every signature made is checked with dkimpy's verifier against the matching public key.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import send_speed  # the sink, the template database and run_ours


def per_call(fn: Callable[[int], object], n: int, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of ``n`` calls, in ms per call (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - t)
    return best / n * 1000


def make_key(workdir: Path, bits: int) -> Path:
    path = workdir / f"dkim-{bits}.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(path), str(bits)],
        check=True,
        capture_output=True,
    )
    return path


def txt_record(signer) -> bytes:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    der = signer.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def key_rows(key: Path, bits: int, messages: list[bytes], now) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    """dkimpy's sign() and ours with one key, each signature checked by dkimpy."""
    import dkim

    from newsletter.delivery.dkim import DkimSigner

    signer = DkimSigner(key, "news", "example.org")
    record = txt_record(signer)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record

    for m in messages[:20]:
        assert dkim.verify(signer.sign(m, now=now), dnsfunc=dns), "ours does not verify"
    pem = key.read_bytes()
    naive = dkim.sign(messages[0], b"news", b"example.org", pem)
    assert dkim.verify(naive + messages[0], dnsfunc=dns), "dkimpy's does not verify"
    k = min(len(messages), 50)
    n = len(messages)
    pkcs1 = _pkcs1()
    return [
        (
            f"dkimpy dkim.sign(), RSA-{bits}",
            per_call(lambda i: dkim.sign(messages[i], b"news", b"example.org", pem), k, 1),
        ),
        (
            f"ours DkimSigner.sign(), RSA-{bits}",
            per_call(lambda i: signer.sign(messages[i], now=now), n),
        ),
        (
            f"  of which the RSA signature, RSA-{bits}",
            per_call(lambda i: signer.key.sign(messages[i][:1500], *pkcs1), n),
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--bits", type=int, nargs="+", default=[2048, 1024])
    ap.add_argument("--no-send", action="store_true", help="skip the run_send measurement")
    args = ap.parse_args()

    from newsletter.delivery import IssueMailer
    from newsletter.models import SubscriberStatus
    from newsletter.store import Store

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average {load}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="dkim-cost-"))
    try:
        day = send_speed.utcnow().date()
        template = send_speed.make_template(workdir, args.subscribers, day)
        settings = send_speed.settings_for(workdir, template, 25)
        with Store.open(settings.database_url) as store:
            issue = store.issue(day)
            assert issue is not None
            subs = list(store.iter_subscribers(SubscriberStatus.ACTIVE))
        mailer = IssueMailer(settings, issue, send_speed.SECRET, send_speed.utcnow())
        messages = [mailer.message(s).data for s in subs]
        n = len(messages)
        size = sum(map(len, messages)) / n
        now = send_speed.utcnow()
        rows: list[tuple[str, float]] = []
        rows.append(
            (
                "build one message (IssueMailer.message)",
                per_call(lambda i: mailer.message(subs[i]), n),
            )
        )
        for bits in args.bits:
            rows += key_rows(make_key(workdir, bits), bits, messages, now)
        rows.append(
            (
                "  of which the body hash (SHA-256)",
                per_call(lambda i: hashlib.sha256(messages[i]).digest(), n),
            )
        )
        send_ms = None
        if not args.no_send:
            r = send_speed.run_ours(workdir, template, day, 0.0, 8, 200, n)
            send_ms = r["elapsed"] / n * 1000
            rows.append(("send one message: run_send, 8x200, 0 ms latency", send_ms))
        print(
            f"{n} messages of {size / 1024:.1f} KiB; load average now "
            + ", ".join(f"{x:.1f}" for x in os.getloadavg())
        )
        print()
        print("| per message | ms | % of sending one |")
        print("|---|---|---|")
        for what, ms in rows:
            share = f"{ms / send_ms * 100:.0f} %" if send_ms else "-"
            print(f"| {what} | {ms:.3f} | {share} |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _pkcs1() -> tuple[object, object]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PKCS1v15(), hashes.SHA256()


if __name__ == "__main__":
    main()
