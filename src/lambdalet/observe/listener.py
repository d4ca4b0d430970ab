"""`--metrics-listen HOST:PORT`: the Prometheus scrape endpoint, plain HTTP on a listener of its own
(off unless asked; loopback unless the operator names another address). The metrics name tenants'
accounts and functions and their traffic, so the listener is for the host's scraper, not for clients
of the API (docs/threat-model.md, "Observability")."""
from __future__ import annotations

import ipaddress
import logging

from prometheus_client import start_http_server

from lambdalet.observe.metrics import REGISTRY

log = logging.getLogger("lambdalet.metrics")


def parse_listen(value: str) -> tuple[str, int]:
    """"PORT", "HOST:PORT" or "[V6]:PORT" -> (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-listen {value!r}: expected HOST:PORT")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsListener:
    """The scrape endpoint's HTTP server (prometheus_client's, in daemon threads) until close()."""

    def __init__(self, listen: str):
        host, port = parse_listen(listen)
        if not is_loopback(host):
            log.warning("--metrics-listen %s: metrics (tenants' function names and traffic) are served WITHOUT "
                        "authentication beyond this host; firewall the port to your scraper", listen)
        self._server, self._thread = start_http_server(port, host, registry=REGISTRY)
        bound_host, bound_port = str(self._server.server_address[0]), self._server.server_address[1]
        self.url = f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
