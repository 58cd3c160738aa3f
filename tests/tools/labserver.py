"""Start a JupyterLab server for a test, find the URL it prints, and stop it by its PID.

Written once for the two tests that need a live server: ``tests/tools/test_make_lab.py`` (the
``make lab`` command itself) and ``tests/tools/browser_check.py`` (``make test-browser``).

The server runs in its own session, so its PID is also its process-group id: stopping sends
SIGTERM to the group (``make`` and JupyterLab), waits with a bound, then SIGKILLs whatever
is left, kernels included (they start in sessions of their own, so they are found as the
server's descendants in ``/proc``). Use it as a context manager, so it stops on failure too::

    with LabServer(["make", "lab"], cwd=ROOT) as lab:
        lab.wait_ready(timeout=120)
        lab.get_json("/api/contents")
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The URL JupyterLab prints once it listens: the real port (after its own port retries) and
# the token.
URL = re.compile(
    r"(?P<base>http://127\.0\.0\.1:(?P<port>\d+)/)(?P<path>\S*?)\?token=(?P<token>\w+)"
)


class LabServerError(RuntimeError):
    """The server did not start, did not answer in time, or did not stop."""


def _children() -> dict[int, list[int]]:
    """Parent PID -> child PIDs of every process in /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...), from /proc."""
    children = _children()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), or None if it ended or is a zombie.

    A PID together with its start time names one process, even after the PID is reused.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def alive(pid: int, start_time: str | None = None) -> bool:
    """True while ``pid`` runs (and, if given, is still the process that started then)."""
    now = _start_time(pid)
    return now is not None and (start_time is None or now == start_time)


class LabServer:
    """A JupyterLab server started from ``argv`` in the background, stopped by its PID.

    Parameters
    ----------
    argv : sequence of str
        The command, e.g. ``["make", "lab"]`` or ``[python, "-m", "jupyterlab", ...]``.
    cwd : path
        Where to run it.
    env : mapping, optional
        Its environment (default: this process's).
    stop_timeout : float
        Seconds :meth:`stop` waits after SIGTERM before it SIGKILLs what is left.
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: str | Path,
        env: dict[str, str] | None = None,
        stop_timeout: float = 20,
    ) -> None:
        self.stop_timeout = stop_timeout  # SIGTERM, then SIGKILL after this many seconds
        self.argv = list(argv)
        self.cwd = Path(cwd)
        self.env = dict(os.environ if env is None else env)
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.url: str | None = None  # the printed URL, token included
        self.base: str | None = None  # http://127.0.0.1:PORT/
        self.port: int | None = None
        self.token: str | None = None
        self._found = threading.Event()
        self._seen: dict[int, str] = {}  # PID -> start time of everything the server started

    # ------------------------------------------------------------------ start and wait
    def start(self) -> LabServer:
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its PID is its process group: stop() signals both
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = URL.search(line)
            if match and not self._found.is_set():
                self.url, self.base = match[0], match["base"]
                self.port, self.token = int(match["port"]), match["token"]
                self._found.set()

    def log(self, last: int = 40) -> str:
        """The last lines the server printed (for error messages)."""
        return "\n".join(self.lines[-last:])

    def wait_ready(self, timeout: float) -> None:
        """Wait until the printed URL answers ``/api/status`` with its token, or raise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._remember_descendants()
            if self.process is None or self.process.poll() is not None:
                raise LabServerError(
                    f"{' '.join(self.argv)} exited with {self.process and self.process.poll()} "
                    f"before it answered:\n{self.log()}"
                )
            if self._found.wait(timeout=0.1):
                try:
                    self.get_json("/api/status", timeout=5)
                    return
                except (OSError, LabServerError):
                    time.sleep(0.5)
        raise LabServerError(
            f"{' '.join(self.argv)} did not answer on 127.0.0.1 within {timeout:.0f} s "
            f"(printed URL: {self.url}):\n{self.log()}"
        )

    # ------------------------------------------------------------------ talk to it
    def request(
        self, method: str, path: str, body: Any = None, timeout: float = 30
    ) -> urllib.request.addinfourl:
        if self.base is None:
            raise LabServerError("the server has not printed its URL yet")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path.lstrip("/"),
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (localhost)
        except urllib.error.HTTPError as error:
            message = f"{method} {path} answered {error.code}: {error.reason}"
            raise LabServerError(message) from None

    def get_json(self, path: str, timeout: float = 30) -> Any:
        with self.request("GET", path, timeout=timeout) as response:
            return json.load(response)

    def run_code(self, code: str, timeout: float = 60) -> str:
        """Start a kernel, run ``code`` in it, shut it down; return what it printed."""
        import websocket  # websocket-client, a dependency of jupyter_server

        with self.request("POST", "/api/kernels", {"name": "python3"}) as response:
            kernel = json.load(response)["id"]
        try:
            self._remember_descendants()
            ws_url = f"ws://127.0.0.1:{self.port}/api/kernels/{kernel}/channels?token={self.token}"
            ws = websocket.create_connection(ws_url, timeout=timeout)
            try:
                return _execute(ws, code, timeout)
            finally:
                ws.close()
        finally:
            self.request("DELETE", f"/api/kernels/{kernel}").close()

    # ------------------------------------------------------------------ stop
    def _remember_descendants(self) -> None:
        if self.process is not None:
            for pid in descendants(self.process.pid):
                start_time = _start_time(pid)
                if start_time is not None:
                    self._seen.setdefault(pid, start_time)

    def started(self) -> dict[int, str]:
        """PID -> start time of the server and every process below it seen so far."""
        self._remember_descendants()
        own = {} if self.process is None else {self.process.pid: _start_time(self.process.pid)}
        return {**{k: v for k, v in own.items() if v is not None}, **self._seen}

    def stop(self, timeout: float | None = None) -> list[int]:
        """SIGTERM the server's process group, wait at most ``timeout``, then SIGKILL the rest.

        Returns the PIDs that had to be killed with SIGKILL (empty after a clean shutdown);
        afterwards nothing the server started is left running.
        """
        if self.process is None:
            return []
        timeout = self.stop_timeout if timeout is None else timeout
        pid = self.process.pid
        self._remember_descendants()
        if self.process.poll() is None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._remember_descendants()
            if self.process.poll() is not None and not any(
                alive(p, t) for p, t in self._seen.items()
            ):
                return []
            time.sleep(0.2)
        killed = [p for p, t in self._seen.items() if alive(p, t)]
        if self.process.poll() is None:
            killed.insert(0, pid)
        for p in killed:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
        while any(alive(p, t) for p, t in self._seen.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return killed

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _execute(ws: Any, code: str, timeout: float) -> str:
    """Send one execute_request over a kernel websocket; collect stdout until idle."""
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": session,
                    "username": "test",
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream" and content["name"] == "stdout":
            printed.append(content["text"])
        elif kind == "error":
            raise LabServerError(f"the kernel raised {content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(printed)
    raise LabServerError(f"the kernel did not finish {code!r} within {timeout:.0f} s")
