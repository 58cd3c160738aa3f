"""Issue 9, items 2 and 14: load_mnist cannot hang, and every file it reads is checked
(checksum of anything that claims to be MNIST, shapes before any allocation)."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import time_limit
from reference import write_fake_mnist

import kdlib.data as data

# The offline copy that .ci/run (and the developer) point KDLIB_DATA_DIR at.
SHARED_MNIST = Path(os.environ.get("KDLIB_DATA_DIR", "/nonexistent")) / "mnist.npz"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env dir, an empty repo data dir and an empty Keras cache (the download is real)."""
    monkeypatch.delenv("KDLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "repo_data")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


# ------------------------------------------------------------------ item 2: bounded download
@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_download_through_a_silent_proxy_gives_up_and_says_where_to_put_the_file(
    isolated, monkeypatch, silent_server
):
    """A proxy that accepts and never answers used to hang load_mnist forever."""
    for var in ("http_proxy", "https_proxy"):
        monkeypatch.setenv(var, silent_server)
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.3)
    start = time.monotonic()
    with time_limit(30), pytest.raises(FileNotFoundError) as err:
        data.load_mnist()
    assert time.monotonic() - start < 15
    message = str(err.value)
    assert "timed out" in message
    assert "mnist.npz" in message and "KDLIB_DATA_DIR" in message
    assert not list((isolated / "keras_home").rglob("*")) or all(
        p.is_dir() for p in (isolated / "keras_home").rglob("*")
    ), "a partial download was left in the Keras cache"


def test_a_download_that_fails_its_checksum_is_refused_and_not_cached(isolated, monkeypatch):
    served = isolated / "served.npz"
    write_fake_mnist(served)
    payload = served.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(data, "MNIST_URL", f"http://127.0.0.1:{server.server_port}/m.npz")
        with time_limit(30), pytest.raises(FileNotFoundError, match="checksum"):
            data.load_mnist()
    finally:
        server.shutdown()
        server.server_close()
    assert not data.keras_cache_path().exists()
    assert not [p for p in data.keras_cache_path().parent.glob("*") if p.is_file()]


# ----------------------------------------------------------------- item 14: checked reads
def test_keras_cache_copy_must_match_the_checksum(isolated):
    cache = data.keras_cache_path()
    cache.parent.mkdir(parents=True)
    write_fake_mnist(cache)
    with pytest.raises(ValueError, match="checksum") as err:
        data.load_mnist()
    assert str(cache) in str(err.value)


def test_env_dir_without_the_file_is_an_error_not_a_silent_fallback(isolated, monkeypatch):
    (isolated / "repo_data").mkdir()
    write_fake_mnist(isolated / "repo_data" / "mnist.npz")
    monkeypatch.setenv("KDLIB_DATA_DIR", str(isolated / "nowhere"))
    with pytest.raises(FileNotFoundError, match="KDLIB_DATA_DIR") as err:
        data.load_mnist()
    assert str(isolated / "nowhere") in str(err.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_zero_rows_are_refused(isolated, split):
    path = isolated / "empty.npz"
    write_fake_mnist(
        path,
        **{f"x_{split}": np.zeros((0, 28, 28), np.uint8), f"y_{split}": np.zeros(0, np.uint8)},
    )
    with pytest.raises(ValueError, match=f"x_{split}.*no images") as err:
        data.load_mnist(path)
    assert str(path) in str(err.value)


def test_member_that_is_not_an_array_is_a_value_error(isolated):
    path = isolated / "odd.npz"
    write_fake_mnist(path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["x_train.npy"] = b"not an array at all"
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    with pytest.raises(ValueError, match="x_train") as err:
        data.load_mnist(path)
    assert str(path) in str(err.value)


def test_header_claiming_a_huge_shape_is_refused_without_allocating(isolated):
    path = isolated / "huge.npz"
    write_fake_mnist(path)
    header = {"descr": "|u1", "fortran_order": False, "shape": (1_000_000_000, 28, 28)}
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(b"\0" * 100)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["x_train.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    with time_limit(20), pytest.raises(ValueError, match="x_train") as err:
        data.load_mnist(path)
    assert str(path) in str(err.value)


def test_full_size_file_with_wrong_content_fails_the_checksum(isolated):
    path = isolated / "mnist.npz"
    write_fake_mnist(path, n_train=60_000, n_test=10_000)
    with pytest.raises(ValueError, match="checksum") as err:
        data.load_mnist(path)
    assert str(path) in str(err.value)


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="needs the offline MNIST copy")
def test_the_real_mnist_passes(isolated):
    (x, y), (xt, yt) = data.load_mnist(SHARED_MNIST)
    assert x.shape == (60_000, 28, 28) and xt.shape == (10_000, 28, 28)
    # the class counts of the original MNIST (LeCun et al.), an independent check
    assert np.bincount(y).tolist()[:3] == [5923, 6742, 5958]
    assert np.bincount(yt).tolist()[:3] == [980, 1135, 1032]
