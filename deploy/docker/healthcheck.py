"""Container health check for the one Sluice image.

The image runs any service (``python -m services.<name> serve --port P``), so
the check reads PID 1's command line to learn which service and port to ask,
then GETs ``/healthz`` on the loopback interface. Exit 0 = healthy, 1 = not.
A container running a one-shot command (``migrate``, ``keygen``) has nothing
to serve and is reported healthy. Only the standard library: it runs with the
image's Python and must not import the application (slow, and it would fail
for the same reasons the service might).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

#: The services' default ports (shared/settings.py DEFAULT_PORTS; duplicated so
#: the check stays import-free).
DEFAULT_PORTS = {"catalog": 8001, "orders": 8002, "access": 8003, "audit": 8004, "dataservice": 8010}


def healthz_url(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The /healthz URL of the service ``argv`` serves, or None for a one-shot command."""
    service = None
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1].startswith("services."):
            service = argv[i + 1].split(".", 1)[1]
            rest = list(argv[i + 2 :])
            break
    if service is None or not rest or rest[0] != "serve":
        return None
    port: str | None = None
    for i, arg in enumerate(rest):
        if arg == "--port" and i + 1 < len(rest):
            port = rest[i + 1]
        elif arg.startswith("--port="):
            port = arg.split("=", 1)[1]
    if port is None:
        port = environ.get(f"SLUICE_{service.upper()}_PORT") or str(DEFAULT_PORTS.get(service, 8000))
    return f"http://127.0.0.1:{int(port)}/healthz"


def pid1_argv(path: str = "/proc/1/cmdline") -> list[str]:
    with open(path, "rb") as f:
        return [part.decode() for part in f.read().split(b"\0") if part]


def check(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback http only)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    url = healthz_url(pid1_argv(), os.environ)
    if url is None:
        return 0
    return 0 if check(url) else 1


if __name__ == "__main__":
    sys.exit(main())
