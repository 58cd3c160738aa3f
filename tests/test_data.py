"""kdlib.data.load_mnist: every lookup step, corrupt and missing files; the helpers."""

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


def isolated(tmp_path, monkeypatch):
    """No env dir, an empty repo data dir, an empty Keras cache, and no network."""
    monkeypatch.delenv("KDLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "repo_data")

    def no_network():
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "_download", no_network)
    return tmp_path


def test_explicit_path_wins(isolated, monkeypatch):
    env_dir = isolated / "env"
    env_dir.mkdir()
    write_fake_mnist(env_dir / "mnist.npz", n_train=20)
    monkeypatch.setenv("KDLIB_DATA_DIR", str(env_dir))
    write_fake_mnist(isolated / "mine.npz", n_train=40)
    (x, y), (xt, yt) = data.load_mnist(isolated / "mine.npz")
    assert x.shape == (40, 28, 28) and x.dtype == np.uint8 and y.dtype == np.uint8
    assert xt.shape == (10, 28, 28) and yt.shape == (10,)


def test_env_dir_before_repo_and_cache(isolated, monkeypatch):
    env_dir = isolated / "env"
    env_dir.mkdir()
    write_fake_mnist(env_dir / "mnist.npz", n_train=20)
    (isolated / "repo_data").mkdir()
    write_fake_mnist(isolated / "repo_data" / "mnist.npz", n_train=30)
    monkeypatch.setenv("KDLIB_DATA_DIR", str(env_dir))
    assert data.load_mnist()[0][0].shape[0] == 20


def test_repo_data_before_keras_cache(isolated):
    (isolated / "repo_data").mkdir()
    write_fake_mnist(isolated / "repo_data" / "mnist.npz", n_train=30)
    cache = isolated / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    write_fake_mnist(cache / "mnist.npz", n_train=50)
    assert data.load_mnist()[0][0].shape[0] == 30


def test_keras_cache(isolated, monkeypatch):
    cache = isolated / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    write_fake_mnist(cache / "mnist.npz", n_train=50)
    # the cached copy must pass MNIST's checksum (test_reliability_data); here: the order
    monkeypatch.setattr(data, "_is_mnist", lambda path, arrays: True)
    assert data.load_mnist()[0][0].shape[0] == 50


def test_download_is_last(isolated, monkeypatch):
    fake = write_fake_mnist(isolated / "dl.npz", n_train=60)
    monkeypatch.setattr(
        data,
        "_download",
        lambda: ((fake["x_train"], fake["y_train"]), (fake["x_test"], fake["y_test"])),
    )
    (x, y), _ = data.load_mnist()
    np.testing.assert_array_equal(x, fake["x_train"])


def test_nothing_and_no_network_says_where_to_put_it(isolated):
    with pytest.raises(FileNotFoundError) as err:
        data.load_mnist()
    message = str(err.value)
    assert "mnist.npz" in message and "KDLIB_DATA_DIR" in message
    assert "network is unreachable" in message
    assert str(isolated / "repo_data" / "mnist.npz") in message


def test_missing_explicit_path(isolated):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load_mnist(isolated / "nope.npz")


def test_truncated_file_names_the_file(isolated):
    good = isolated / "good.npz"
    write_fake_mnist(good)
    bad = isolated / "truncated.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        data.load_mnist(bad)


def test_garbage_file_names_the_file(isolated):
    bad = isolated / "garbage.npz"
    bad.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        data.load_mnist(bad)


def test_pickled_object_arrays_are_refused(isolated):
    bad = isolated / "pickled.npz"
    np.savez(
        bad,
        x_train=np.array([{"a": 1}], dtype=object),
        y_train=np.zeros(1),
        x_test=np.zeros(1),
        y_test=np.zeros(1),
    )
    with pytest.raises(ValueError, match="pickled.npz"):
        data.load_mnist(bad)


@pytest.mark.parametrize(
    "override,fragment",
    [
        ({"x_train": np.zeros((30, 28, 28), np.float32)}, "dtypes"),
        ({"x_test": np.zeros((10, 32, 32), np.uint8)}, "shape"),
        ({"y_test": np.full(10, 12, np.uint8)}, "labels span"),
        ({"y_train": np.zeros(29, np.uint8)}, "y_train has shape"),
    ],
)
def test_wrong_contents(isolated, override, fragment):
    path = isolated / "odd.npz"
    write_fake_mnist(path, **override)
    with pytest.raises(ValueError, match=fragment):
        data.load_mnist(path)


def test_missing_key(isolated):
    path = isolated / "partial.npz"
    np.savez(path, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="partial.npz"):
        data.load_mnist(path)


def test_real_offline_copy_if_present():
    path = data.candidate_paths()[0]
    if not path.is_file():
        pytest.skip("no offline MNIST here")
    (x, y), (xt, yt) = data.load_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    # class counts from the data set's own README
    np.testing.assert_array_equal(
        np.bincount(yt), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )


def test_scale_images():
    x = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(data.scale_images(x), [[0.0, 0.2, 1.0]], rtol=1e-7)
    assert data.scale_images(x).dtype == np.float32
    with pytest.raises(ValueError, match="uint8"):
        data.scale_images(x.astype("float32"))


def test_balanced_subset():
    y = np.repeat(np.arange(10), 50)
    x = np.arange(500)
    xs, ys = data.balanced_subset(x, y, 103, seed=1)
    counts = np.bincount(ys, minlength=10)
    assert counts.sum() == 103 and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(y[xs], ys)  # images stay paired with their labels
    assert len(np.unique(xs)) == 103  # no duplicates
    xs2, _ = data.balanced_subset(x, y, 103, seed=1)
    np.testing.assert_array_equal(xs, xs2)
    with pytest.raises(ValueError, match="size"):
        data.balanced_subset(x, y, 0)
    with pytest.raises(ValueError, match="class"):
        data.balanced_subset(x, y, 600)


# -------------------------------- load_mnist cannot hang, and every file it reads is checked
# The offline copy that .ci/run (and the developer) point KDLIB_DATA_DIR at.
SHARED_MNIST = Path(os.environ.get("KDLIB_DATA_DIR", "/nonexistent")) / "mnist.npz"


@pytest.fixture
def isolated_online(tmp_path, monkeypatch):
    """No env dir, an empty repo data dir and an empty Keras cache (the download is real)."""
    monkeypatch.delenv("KDLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "repo_data")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


# ------------------------------------------------------------------ bounded download
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
    isolated_online, monkeypatch, silent_server
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
    assert not list((isolated_online / "keras_home").rglob("*")) or all(
        p.is_dir() for p in (isolated_online / "keras_home").rglob("*")
    ), "a partial download was left in the Keras cache"


def test_a_download_that_fails_its_checksum_is_refused_and_not_cached(
    isolated_online, monkeypatch
):
    served = isolated_online / "served.npz"
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


# ----------------------------------------------------------------- checked reads
def test_keras_cache_copy_must_match_the_checksum(isolated_online):
    cache = data.keras_cache_path()
    cache.parent.mkdir(parents=True)
    write_fake_mnist(cache)
    with pytest.raises(ValueError, match="checksum") as err:
        data.load_mnist()
    assert str(cache) in str(err.value)


def test_env_dir_without_the_file_is_an_error_not_a_silent_fallback(isolated_online, monkeypatch):
    (isolated_online / "repo_data").mkdir()
    write_fake_mnist(isolated_online / "repo_data" / "mnist.npz")
    monkeypatch.setenv("KDLIB_DATA_DIR", str(isolated_online / "nowhere"))
    with pytest.raises(FileNotFoundError, match="KDLIB_DATA_DIR") as err:
        data.load_mnist()
    assert str(isolated_online / "nowhere") in str(err.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_zero_rows_are_refused(isolated_online, split):
    path = isolated_online / "empty.npz"
    write_fake_mnist(
        path,
        **{f"x_{split}": np.zeros((0, 28, 28), np.uint8), f"y_{split}": np.zeros(0, np.uint8)},
    )
    with pytest.raises(ValueError, match=f"x_{split}.*no images") as err:
        data.load_mnist(path)
    assert str(path) in str(err.value)


def test_member_that_is_not_an_array_is_a_value_error(isolated_online):
    path = isolated_online / "odd.npz"
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


def test_header_claiming_a_huge_shape_is_refused_without_allocating(isolated_online):
    path = isolated_online / "huge.npz"
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


def test_full_size_file_with_wrong_content_fails_the_checksum(isolated_online):
    path = isolated_online / "mnist.npz"
    write_fake_mnist(path, n_train=60_000, n_test=10_000)
    with pytest.raises(ValueError, match="checksum") as err:
        data.load_mnist(path)
    assert str(path) in str(err.value)


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="needs the offline MNIST copy")
def test_the_real_mnist_passes(isolated_online):
    (x, y), (xt, yt) = data.load_mnist(SHARED_MNIST)
    assert x.shape == (60_000, 28, 28) and xt.shape == (10_000, 28, 28)
    # the class counts of the original MNIST (LeCun et al.), an independent check
    assert np.bincount(y).tolist()[:3] == [5923, 6742, 5958]
    assert np.bincount(yt).tolist()[:3] == [980, 1135, 1032]
