"""tests/tools/labserver.py, the start/stop helper of the `make lab` and browser tests.

A stand-in server (a few lines of http.server) prints a URL with a token, as JupyterLab does,
and starts a child in a session of its own, as JupyterLab starts kernels. The helper must
find the URL, wait until it answers, and leave nothing running afterwards, also when the
test fails inside the ``with`` block and when the server ignores SIGTERM.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
from labserver import LabServer, LabServerError, alive

SERVER = textwrap.dedent(
    """
    import http.server, json, signal, subprocess, sys
    if sys.argv[1] == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # a grandchild in its own session, like a Jupyter kernel
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                     start_new_session=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == "token abc123"
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(json.dumps({"path": self.path}).encode())
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    print(f"listening: http://127.0.0.1:{port}/lab/tree/01_x.ipynb?token=abc123", flush=True)
    server.serve_forever()
    """
)


def _server(mode: str) -> LabServer:
    return LabServer([sys.executable, "-c", SERVER, mode], cwd=".", stop_timeout=0.3)


def test_finds_the_printed_url_and_answers_with_the_token():
    with _server("normal") as lab:
        lab.wait_ready(timeout=30)
        assert lab.url == f"http://127.0.0.1:{lab.port}/lab/tree/01_x.ipynb?token=abc123"
        assert lab.token == "abc123"
        assert lab.get_json("/api/contents") == {"path": "/api/contents"}
        started = lab.started()
        assert len(started) >= 2  # the server and its "kernel"
    assert all(not alive(pid, t) for pid, t in started.items())


@pytest.mark.parametrize("mode", ["normal", "ignore-term"])
def test_nothing_is_left_running_when_the_test_fails_inside(mode):
    lab = _server(mode)
    with pytest.raises(AssertionError, match="a failing check"):
        with lab:
            lab.wait_ready(timeout=30)
            started = lab.started()
            raise AssertionError("a failing check")
    assert lab.process.returncode is not None
    assert all(not alive(pid, t) for pid, t in started.items())


def test_a_server_that_exits_early_is_reported_with_its_output():
    lab = LabServer([sys.executable, "-c", "print('port in use'); raise SystemExit(3)"], ".")
    with lab, pytest.raises(LabServerError, match="exited with 3(.|\\n)*port in use"):
        lab.wait_ready(timeout=30)


def test_a_server_that_never_answers_times_out():
    silent = [sys.executable, "-c", "import time; time.sleep(60)"]
    with LabServer(silent, ".", stop_timeout=0.3) as lab:
        with pytest.raises(LabServerError, match="did not answer on 127.0.0.1 within 1 s"):
            lab.wait_ready(timeout=1)
    assert lab.process.returncode is not None
