"""The image's health check (deploy/docker/healthcheck.py) asks the right port and
tells healthy from unhealthy."""

from __future__ import annotations

import http.server
import importlib.util
import socket
import threading
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.deploy.manifests import DEPLOY


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sluice_healthcheck", DEPLOY / "docker" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hc = load_module()


@pytest.mark.parametrize(
    ("argv", "env", "url"),
    [
        (["python", "-m", "services.catalog", "serve", "--host", "0.0.0.0", "--port", "8001"], {},
         "http://127.0.0.1:8001/healthz"),
        (["python", "-m", "services.orders", "serve", "--port=9002"], {}, "http://127.0.0.1:9002/healthz"),
        (["python", "-m", "services.audit", "serve"], {}, "http://127.0.0.1:8004/healthz"),
        (["python", "-m", "services.audit", "serve"], {"SLUICE_AUDIT_PORT": "9104"}, "http://127.0.0.1:9104/healthz"),
        (["python", "-m", "services.access", "migrate"], {}, None),
        (["python", "-m", "services.audit", "keygen"], {}, None),
        (["localstripe", "--port", "8420"], {}, None),
    ],
)
def test_healthz_url_follows_the_command(argv, env, url):
    assert hc.healthz_url(argv, env) == url


def test_pid1_command_line_is_split_on_nul(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"python\0-m\0services.catalog\0serve\0--port\08001\0")
    assert hc.pid1_argv(str(cmdline)) == ["python", "-m", "services.catalog", "serve", "--port", "8001"]


@pytest.fixture
def server() -> Iterator[dict[str, int]]:
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(state["status"] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["port"] = httpd.server_address[1]
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_check_is_healthy_on_200_and_unhealthy_otherwise(server):
    url = f"http://127.0.0.1:{server['port']}/healthz"
    assert hc.check(url) is True
    server["status"] = 503
    assert hc.check(url) is False


def test_check_is_unhealthy_when_nothing_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert hc.check(f"http://127.0.0.1:{port}/healthz", timeout=1) is False
