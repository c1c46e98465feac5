"""Sign-up end to end in headless Chromium: open the subscribe page, type an address, click
Subscribe, follow the link from the email aiosmtpd caught, see the confirmation.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no driver or extra
package is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import test_web
from conftest import CHROMIUM, needs_chromium

from newsletter.models import SubscriberStatus

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
        """A real mouse click in the middle of the element."""
        self.drain()
        box = self.js(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
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
