"""How long slow clients can hold `newsletter serve`: waitress's defaults against the limits
`newsletter serve` sets (newsletter.web.server.Limits), over real sockets on 127.0.0.1.

    python bench/slow_clients.py [--clients 110] [--drip-every 15] [--cap 180]

Scenarios, each against a fresh server per configuration (all run at once):
- half-open: CLIENTS connections each send half a request and stop; then one normal
  request: how long until it is answered;
- silent: CLIENTS connections send nothing; the same normal request;
- drip: one connection sends a header line every DRIP_EVERY seconds: how long until the
  server closes it (at most CAP seconds are waited).
"""

from __future__ import annotations

import argparse
import http.client
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress import create_server

from newsletter.web import make_server


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def waitress_defaults() -> Any:
    return create_server(app, host="127.0.0.1", port=0)


def newsletter_limits() -> Any:
    return make_server(app, host="127.0.0.1", port=0)


def normal_request(port: int, cap: float) -> float:
    t = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=cap)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return time.monotonic() - t
    except TimeoutError:
        return float("inf")
    finally:
        conn.close()


def crowd(port: int, clients: int, first_bytes: bytes, cap: float) -> float:
    socks = []
    try:
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port))
            if first_bytes:
                s.sendall(first_bytes)
            socks.append(s)
        time.sleep(0.3)
        return normal_request(port, cap)
    finally:
        for s in socks:
            s.close()


def drip(port: int, every: float, cap: float) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < cap:
            s.settimeout(min(every, cap - (time.monotonic() - start)))
            try:
                s.recv(100)
                return time.monotonic() - start  # closed (or answered)
            except TimeoutError:
                try:
                    s.sendall(b"X-Drip-%d: y\r\n" % n)
                except OSError:
                    return time.monotonic() - start
                n += 1
            except OSError:
                return time.monotonic() - start
        return float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=110)
    ap.add_argument("--drip-every", type=float, default=15.0)
    ap.add_argument("--cap", type=float, default=180.0)
    args = ap.parse_args()

    configs = {"waitress defaults": waitress_defaults, "newsletter serve": newsletter_limits}
    scenarios: dict[str, Callable[[int], float]] = {
        f"{args.clients} half-open, then a request: answered after": lambda p: crowd(
            p, args.clients, b"GET / HTTP/1.1\r\nHost: x\r\n", args.cap
        ),
        f"{args.clients} silent, then a request: answered after": lambda p: crowd(
            p, args.clients, b"", args.cap
        ),
        f"a header line every {args.drip_every:g} s: closed after": lambda p: drip(
            p, args.drip_every, args.cap
        ),
    }
    results: dict[tuple[str, str], float] = {}

    def measure(key: tuple[str, str], run: Callable[[int], float], port: int) -> None:
        results[key] = run(port)

    servers = []
    threads = []
    for config, factory in configs.items():
        for scenario, run in scenarios.items():
            server = factory()
            servers.append(server)
            threading.Thread(target=server.run, daemon=True).start()
            args_ = ((scenario, config), run, server.effective_port)
            threads.append(threading.Thread(target=measure, args=args_))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for server in servers:
        server.close()

    def fmt(x: float) -> str:
        return f"over {args.cap:g} s" if x == float("inf") else f"{x:.1f} s"

    print("| scenario | " + " | ".join(configs) + " |")
    print("|---|" + "---|" * len(configs))
    for scenario in scenarios:
        print(f"| {scenario} | " + " | ".join(fmt(results[scenario, c]) for c in configs) + " |")


if __name__ == "__main__":
    main()
