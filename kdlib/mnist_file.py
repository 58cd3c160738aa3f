"""The ``mnist.npz`` file: read it without trusting it, check that it is MNIST, download it.

:func:`read_npz` checks a file before its arrays are read (four uint8 arrays whose headers
fit the file, images of 28 x 28, labels 0 to 9, at least one image per split), and a file
that claims to be MNIST (one in the Keras cache, a download, or any file of MNIST's
60,000 + 10,000 images) must match MNIST's checksum. :func:`fetch` downloads a file
atomically and checks its SHA-256; it gives up after ``DOWNLOAD_TIMEOUT_S`` seconds without
an answer and after ``DOWNLOAD_DEADLINE_S`` seconds in all, so a proxy that never answers
cannot hang it. Where the file is looked for is :func:`kdlib.data.load_mnist`'s job.
"""

from __future__ import annotations

import hashlib
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from kdlib import io

__all__ = [
    "ImagesLabels",
    "FILENAME",
    "DATA_DIR_ENV_VAR",
    "MNIST_URL",
    "MNIST_FILE_SHA256",
    "read_npz",
    "fetch",
]

#: Images and labels of one part of the data set, ``(x, y)``.
ImagesLabels = tuple[np.ndarray, np.ndarray]

FILENAME = "mnist.npz"
#: Names a folder :func:`kdlib.data.load_mnist` searches; errors advise setting it.
DATA_DIR_ENV_VAR = "KDLIB_DATA_DIR"
_KEYS = ("x_train", "y_train", "x_test", "y_test")

#: Where Keras downloads MNIST from, and the SHA-256 of that file (keras.datasets.mnist).
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_FILE_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
#: SHA-256 of MNIST's arrays (x_train, y_train, x_test, y_test bytes, in that order): the
#: same for every faithful copy, however the .npz was compressed.
MNIST_CONTENT_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
#: Row counts of the full data set: a file of this size claims to be MNIST.
MNIST_ROWS = {"x_train": 60_000, "x_test": 10_000}
#: Seconds the download waits for an answer (each connect or read), and in all.
DOWNLOAD_TIMEOUT_S = 30.0
DOWNLOAD_DEADLINE_S = 600.0


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _content_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in _KEYS:
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def _check_headers(path: Path) -> None:
    """Check every member's .npy header against the zip entry before NumPy allocates.

    A header is only a claim: one saying (10**9, 28, 28) would make ``np.load`` allocate
    730 GiB. The data must fit in the entry (``allow_pickle=False`` refuses objects).
    """
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: info for info in archive.infolist()}
        for key in _KEYS:
            info = entries.get(f"{key}.npy") or entries.get(key)
            if info is None:
                raise ValueError(f"missing array {key!r} (found {sorted(entries)})")
            with archive.open(info) as member:
                shape, dtype = _read_header(member, key)
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if size > info.file_size:
                raise ValueError(
                    f"{key} claims shape {shape} of {dtype}: more data ({size:,} bytes) "
                    f"than the file holds ({info.file_size:,} bytes)"
                )


def _read_header(member: IO[bytes], key: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    except ValueError as err:
        raise ValueError(f"{key} is not a NumPy array ({err})") from None
    return tuple(shape), np.dtype(dtype)


def read_npz(path: Path, claims_mnist: bool = False) -> tuple[ImagesLabels, ImagesLabels]:
    """Read and validate an MNIST ``.npz``; raise ValueError naming the file if it is bad.

    ``claims_mnist``: the file must be MNIST itself (the Keras cache, a download), so its
    checksum is verified whatever its size.
    """
    try:
        _check_headers(path)
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _KEYS}
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as err:
        raise ValueError(
            f"{path} is not a valid MNIST file ({type(err).__name__}: {err}). It may be "
            f"truncated or corrupt: delete it and put a good copy of {FILENAME} there, or "
            f"point {DATA_DIR_ENV_VAR} at a folder that holds one."
        ) from err
    _check_contents(arrays, path)
    full_size = all(arrays[k].shape[0] == n for k, n in MNIST_ROWS.items())
    if (claims_mnist or full_size) and not _is_mnist(path, arrays):
        raise ValueError(
            f"{path} claims to be MNIST but fails MNIST's checksum: it is damaged or a "
            f"different data set. Delete it; put the original {FILENAME} there (from "
            f"{MNIST_URL}), or point {DATA_DIR_ENV_VAR} at a folder that holds it."
        )
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _is_mnist(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    return (
        _content_sha256(arrays) == MNIST_CONTENT_SHA256 or _file_sha256(path) == MNIST_FILE_SHA256
    )


def _check_contents(arrays: dict[str, np.ndarray], path: Path | str) -> None:
    problems = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            problems.append(f"x_{split}/y_{split} are not both arrays")
            continue
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            problems.append(f"x_{split}/y_{split} dtypes are {x.dtype}/{y.dtype}, not uint8")
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            problems.append(f"x_{split} has shape {x.shape}, not (n, 28, 28)")
        elif x.shape[0] == 0:
            problems.append(f"x_{split} has no images")
        if y.shape != (x.shape[0],):
            problems.append(f"y_{split} has shape {y.shape}, not ({x.shape[0]},)")
        if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
            problems.append(f"y_{split} labels span {y.min()}..{y.max()}, not 0..9")
    if problems:
        raise ValueError(
            f"{path} does not hold MNIST as expected: "
            + "; ".join(problems)
            + f". Replace it with the original {FILENAME}."
        )


def fetch(url: str, target: Path, sha256: str) -> None:
    """Download ``url`` to ``target`` atomically, within the timeouts, checking its SHA-256.

    Raises TimeoutError when the server stops answering for ``DOWNLOAD_TIMEOUT_S`` seconds
    or the whole download takes over ``DOWNLOAD_DEADLINE_S``; ValueError on a bad checksum.
    Nothing is left at ``target`` unless the file is complete and verified.
    """
    deadline = time.monotonic() + DOWNLOAD_DEADLINE_S
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with io.atomic_path(target) as temporary:
            # a fresh opener reads the proxy settings now (urlopen's is built once)
            opener = urllib.request.build_opener()
            with opener.open(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                with open(temporary, "wb") as out:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        digest.update(chunk)
                        out.write(chunk)
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"the download took over {DOWNLOAD_DEADLINE_S:g} s")
            if digest.hexdigest() != sha256:
                raise ValueError(
                    f"the file from {url} fails MNIST's checksum (SHA-256 "
                    f"{digest.hexdigest()}, expected {sha256}); it was not kept"
                )
    except TimeoutError as err:
        raise TimeoutError(f"{url}: timed out ({err or 'no answer'})") from err
    except OSError as err:
        if "timed out" in str(err):
            raise TimeoutError(
                f"{url}: timed out (no answer within {DOWNLOAD_TIMEOUT_S:g} s)"
            ) from err
        raise
