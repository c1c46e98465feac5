"""The web side end to end in headless Chromium.  Sign-up: open the subscribe page, type an
address, click Subscribe, follow the link from the email aiosmtpd caught, see the
confirmation.  Preferences: send an issue through aiosmtpd, open its "Tune your digest"
link against a real `newsletter serve`, type a keyword, upload a BibTeX file, save.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no driver or extra
package is needed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import test_web
from click.testing import CliRunner
from conftest import CHROMIUM, needs_chromium
from smtp_server import free_port

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.models import Paper, SubscriberStatus
from newsletter.store import Store

serve = test_web.serve  # the fixture: the app in waitress on a free port

pytestmark = needs_chromium


class Browser:
    """One headless Chromium and one page in it, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        script = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}'
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                script,
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self.seen: list[dict[str, Any]] = []  # events already taken off the queue
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)
        self.call("Log.enable", session=True)

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._from_chrome, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    msg = json.loads(raw)
                    if "id" in msg:
                        with self._lock:
                            box = self._replies.get(msg["id"])
                        if box is not None:
                            box.put(msg)
                    else:
                        self.events.put(msg)

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            n = self._next_id
            box: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[n] = box
        msg: dict[str, Any] = {"id": n, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        reply = box.get(timeout=30)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply.get("result", {})

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            self.seen.append(event)
            if event.get("method") == method:
                return event

    def js(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.drain()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        self.drain()
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                session=True,
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def type_into(self, selector: str, text: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", session=True, text=text)

    def drain(self) -> None:
        """Take every event so far off the queue (the next wait_for sees only new ones)."""
        while not self.events.empty():
            self.seen.append(self.events.get())

    def log_errors(self) -> list[str]:
        self.drain()
        return [
            e["params"]["entry"]["text"]
            for e in self.seen
            if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
        ]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        self._reader.join(5)


def test_sign_up_and_confirm_in_a_browser(serve, smtp_server, tmp_path):
    smtp = smtp_server()
    web = serve(smtp.config())
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(f"{web.base}/subscribe")
        assert browser.js("document.querySelector('h1').textContent") == "Subscribe"
        # The stylesheet is allowed by its hash in the CSP: the button is styled.
        assert browser.js("getComputedStyle(document.querySelector('button')).backgroundColor") in (
            "rgb(11, 87, 208)",
        )

        browser.type_into("#email", "Grace.Hopper@Example.org")
        browser.type_into("#name", "Grace")
        browser.click("button[type=submit]")
        browser.wait_for("Page.loadEventFired")
        assert browser.js("document.querySelector('h1').textContent") == "Check your inbox"
        assert "grace.hopper@example.org" in browser.js("document.body.innerText")
        sub = web.store.subscriber("grace.hopper@example.org")
        assert sub is not None and sub.status is SubscriberStatus.PENDING

        link = test_web.confirm_link(smtp.received, "grace.hopper@example.org")
        browser.goto(link)
        assert browser.js("document.querySelector('h1').textContent") == "You are subscribed"
        sub = web.store.subscriber("grace.hopper@example.org")
        assert sub.status is SubscriberStatus.ACTIVE and sub.name == "Grace"
        # Nothing was refused by the Content-Security-Policy on the way.
        assert browser.log_errors() == []
    finally:
        browser.close()


# --------------------------------------------------------------------------- preferences

#: A small export as Zotero writes one: two papers with their titles and abstracts.
SMALL_BIBTEX = r"""@misc{kilgour_inelastic_2016,
	title = {Inelastic effects in molecular transport junctions: {The} probe technique at high bias},
	url = {http://arxiv.org/abs/1601.00001},
	doi = {10.48550/arXiv.1601.00001},
	abstract = {We extend the Landauer-B{\"u}ttiker probe formalism for conductances to the high bias regime.},
	author = {Kilgour, Michael and Segal, Dvira},
	year = {2016},
	note = {arXiv:1601.00001 [cond-mat]},
}

@article{mery_semantic_2013,
	title = {Semantic {Types}, {Lexical} {Sorts} and {Classifiers}},
	abstract = {We propose a cognitively and linguistically motivated set of sorts for lexical semantics in a compositional setting.},
	author = {Mery, Bruno and Retoré, Christian},
	year = {2013},
}
"""


def start_serve(config: Path, port: int, cwd: Path) -> subprocess.Popen[str]:
    """`newsletter serve` as the operator runs it, once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-c", str(config), "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **test_web.ENV},
        cwd=cwd,
    )
    line = proc.stderr.readline() if proc.stderr else ""
    assert f"on http://127.0.0.1:{port}" in line, line
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    finally:
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.slow
def test_tune_your_digest_from_a_real_email_in_a_browser(smtp_server, tmp_path):
    """Send an issue through aiosmtpd, open the "Tune your digest" link of the message that
    arrived in Chromium against a real `newsletter serve`, type a keyword, upload a BibTeX
    export, save: the store has them, and the next issue's "For you" follows them."""
    from newsletter.samples import FEEDS

    smtp = smtp_server()
    port = free_port()
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path}/newsletter.db"\n'
        "[list]\n"
        'name = "Lab Papers"\n'
        'from_address = "papers@example.org"\n'
        f'base_url = "http://127.0.0.1:{port}"\n'
        # ids are looked up here: nothing listens on port 9, nothing leaves the machine
        '[fetch]\narxiv_api_url = "http://127.0.0.1:9/api/query"\n'
        + smtp.config()
        + "".join(
            f'[[sources]]\nname = "{name}"\nkind = "{kind}"\npath = "{FEEDS / file}"\n'
            for name, kind, file in (
                ("arxiv-cs", "arxiv-rss", "arxiv-cs.xml"),
                ("hf-daily", "hf-daily", "hf-daily.json"),
            )
        ),
        encoding="utf-8",
    )
    settings = load_settings(config, env=test_web.ENV)
    with Store.open(settings.database_url) as store:
        store.add_subscriber("ada@example.org", "Ada", now=test_web.now())
    sent = CliRunner().invoke(cli, ["-c", str(config), "send"], env=test_web.ENV)
    assert sent.exit_code == 0, sent.output

    (received,) = [r for r in smtp.received if r.rcpt_tos == ["ada@example.org"]]
    msg = received.message
    text_part = msg.get_body(("plain",)).get_content()
    html_part = msg.get_body(("html",)).get_content()
    link = re.search(r"Tune your digest[^\n]*:\s+(http://\S+)", text_part).group(1)
    html_link = re.search(r'href="([^"]+)"[^>]*>Tune your digest</a>', html_part).group(1)
    assert html_link == link  # the same link in both parts
    assert link.startswith(f"http://127.0.0.1:{port}/preferences/")

    bib = tmp_path / "My Library.bib"
    bib.write_text(SMALL_BIBTEX, encoding="utf-8")
    server = start_serve(config, port, tmp_path)
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(link)
        assert browser.js("document.querySelector('h1').textContent") == "Tune your digest"
        assert "ada@example.org" in browser.js("document.body.innerText")
        browser.type_into("#keywords", "transport junctions")
        browser.type_into("#categories", "cond-mat.mes-hall")
        # A file chosen as a person would in the file dialog.
        node = browser.call(
            "Runtime.evaluate",
            session=True,
            expression="document.querySelector('#library_file')",
        )["result"]["objectId"]
        browser.call("DOM.setFileInputFiles", session=True, files=[str(bib)], objectId=node)
        browser.click("button[type=submit]")
        browser.wait_for("Page.loadEventFired")
        assert browser.js("document.querySelector('#saved') !== null"), browser.js(
            "document.body.innerText"
        )
        shown = browser.js("document.querySelector('#library-papers').innerText")
        assert "Inelastic effects in molecular transport junctions" in shown
        assert "Semantic Types, Lexical Sorts and Classifiers" in shown
        assert browser.log_errors() == []  # nothing refused by the Content-Security-Policy
    finally:
        browser.close()
        stop(server)

    with Store.open(settings.database_url) as store:
        sub = store.subscriber("ada@example.org")
        got = store.interests(sub.id)
    assert got.interests.keywords == ("transport junctions",)
    assert got.interests.categories == ("cond-mat.mes-hall",)
    titles = [p.title for p in got.interests.library]
    assert titles == [
        "Inelastic effects in molecular transport junctions: The probe technique at high bias",
        "Semantic Types, Lexical Sorts and Classifiers",
    ]
    assert got.interests.library[0].id == "arxiv:1601.00001"

    # The next issue's "For you" follows what she saved: tomorrow's papers (two on her
    # keyword and category among others), sent through the same server.
    assert "FOR YOU" not in text_part  # she had stated nothing
    day = dt.date.fromisoformat(re.search(r"/archive/(\d{4}-\d\d-\d\d)", text_part).group(1))
    tomorrow = day + dt.timedelta(days=1)
    seen = dt.datetime.combine(tomorrow, dt.time(0, 30), dt.UTC)
    with Store.open(settings.database_url) as store:
        store.upsert_papers(next_day_papers(), seen_at=seen)
    sent = CliRunner().invoke(
        cli, ["-c", str(config), "send", "--date", tomorrow.isoformat()], env=test_web.ENV
    )
    assert sent.exit_code == 0, sent.output
    (again,) = [r for r in smtp.received if r.rcpt_tos == ["ada@example.org"] and r is not received]
    text = again.message.get_body(("plain",)).get_content()
    section = text.partition("FOR YOU · ")[2].partition("IN THIS ISSUE")[0]
    assert section, text
    whys = " ".join(re.findall(r"Why: (.+)", section))
    assert "'transport junctions'" in whys and "cond-mat.mes-hall" in whys, section
    assert "Electron transport through molecular junctions" in section
    assert "Galaxy rotation curves" not in section  # nothing she asked for


def next_day_papers() -> list[Paper]:
    """Six papers of a day: two on molecular transport junctions (cond-mat.mes-hall), the
    others far from it."""
    rows = [
        ("2604.10001", "Electron transport through molecular junctions at finite bias",
         "We study transport junctions of single molecules and inelastic effects at high bias.",
         "cond-mat.mes-hall"),
        ("2604.10002", "Shot noise in transport junctions with vibrational modes",
         "Noise spectra of molecular transport junctions reveal vibrational excitations.",
         "cond-mat.mes-hall"),
        ("2604.10003", "Galaxy rotation curves without dark matter halos",
         "We fit rotation curves of spiral galaxies with a modified gravity model.",
         "astro-ph.GA"),
        ("2604.10004", "Sparse attention for long documents",
         "A sparse attention pattern lets transformers read documents of 100k tokens.",
         "cs.CL"),
        ("2604.10005", "Robust regression with heavy-tailed noise",
         "We propose an estimator for linear regression under heavy-tailed noise.",
         "stat.ME"),
        ("2604.10006", "Graph neural networks for molecule property prediction",
         "Message passing networks predict properties of small molecules from graphs.",
         "cs.LG"),
    ]  # fmt: skip
    return [
        Paper(
            id=f"arxiv:{i}",
            title=title,
            abstract=abstract,
            authors=("A. Author",),
            url=f"https://arxiv.org/abs/{i}",
            categories=(category,),
            source="arxiv-cs",
        )
        for i, title, abstract, category in rows
    ]
