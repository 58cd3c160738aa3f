"""MNIST loading that works offline, on CI, in JupyterLab and in Colab.

:func:`load_mnist` looks for ``mnist.npz`` in this order and uses the first file found:

1. the ``path`` argument;
2. ``$KDLIB_DATA_DIR/mnist.npz``;
3. ``data/mnist.npz`` in the repository (next to the ``kdlib`` package);
4. the Keras cache (``~/.keras/datasets/mnist.npz``, or under ``$KERAS_HOME``);
5. a download from Keras' MNIST address into the Keras cache (what happens in Colab).

If ``KDLIB_DATA_DIR`` is set, the file must be there: a wrong folder is an error, not a
silent fall-back to another copy. Every file is checked before its arrays are read (four
uint8 arrays whose headers fit the file, images of 28 x 28, labels 0 to 9, at least one
image per split), and a file that claims to be MNIST (one in the Keras cache, a download,
or any file of MNIST's 60,000 + 10,000 images) must match MNIST's checksum. The download
gives up after ``DOWNLOAD_TIMEOUT_S`` seconds without an answer and after
``DOWNLOAD_DEADLINE_S`` seconds in all, so a proxy that never answers cannot hang it.
Those checks, the checksums, the timeouts and the download itself live in
:mod:`kdlib.data`; this module decides where to look.

:func:`scale_images` and :func:`balanced_subset` prepare the arrays for training.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from kdlib import io, validate

__all__ = [
    "balanced_subset",
    "load_mnist",
    "scale_images",
]


# ------ The ``mnist.npz`` file: read it without trusting it, check that it is MNIST, download it
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


REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def keras_cache_path() -> Path:
    """Where Keras caches ``mnist.npz`` (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "datasets" / FILENAME


def candidate_paths(path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The local files :func:`load_mnist` tries, in order (whether or not they exist)."""
    paths = []
    if path is not None:
        paths.append(Path(path))
    env_dir = os.environ.get(DATA_DIR_ENV_VAR)
    if env_dir:
        paths.append(Path(env_dir) / FILENAME)
    paths.append(REPO_DATA_DIR / FILENAME)
    paths.append(keras_cache_path())
    return paths


def _download() -> tuple[ImagesLabels, ImagesLabels]:
    """Download MNIST into the Keras cache (where ``keras.datasets.mnist`` looks), verified."""
    target = keras_cache_path()
    fetch(MNIST_URL, target, MNIST_FILE_SHA256)
    return read_npz(target, claims_mnist=True)


def load_mnist(path: str | os.PathLike[str] | None = None) -> tuple[ImagesLabels, ImagesLabels]:
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, uint8, like Keras does.

    Parameters
    ----------
    path : str or path-like, optional
        An explicit ``mnist.npz``. If given it must exist.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test)) with shapes (60000, 28, 28), (60000,),
    (10000, 28, 28), (10000,) for the full data set.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or no local copy exists and the download fails; the
        message lists every place looked in.
    ValueError
        If the file found is truncated, corrupt or not MNIST; the message names the file.
    """
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(
            f"load_mnist(path={str(path)!r}): no such file. Pass the path of an existing "
            f"{FILENAME}, or path=None to search {DATA_DIR_ENV_VAR}, data/ and the Keras cache."
        )
    env_dir = os.environ.get(DATA_DIR_ENV_VAR)
    if path is None and env_dir and not (Path(env_dir) / FILENAME).is_file():
        raise FileNotFoundError(
            f"{DATA_DIR_ENV_VAR}={env_dir!r}, but {Path(env_dir) / FILENAME} does not exist. "
            f"Put {FILENAME} in that folder, point {DATA_DIR_ENV_VAR} at the folder that "
            f"holds it, or unset {DATA_DIR_ENV_VAR} to use data/, the Keras cache or a "
            "download."
        )
    candidates = candidate_paths(path)
    for candidate in candidates:
        if candidate.is_file():
            return read_npz(candidate, claims_mnist=candidate == keras_cache_path())
    try:
        return _download()  # read_npz has checked it like any local copy
    except Exception as err:  # no network, proxy, timeout, SSL, checksum: "no data here"
        looked = "\n  ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"MNIST is not available: no local {FILENAME} and the download failed "
            f"({type(err).__name__}: {err}).\nLooked in:\n  {looked}\n"
            f"Put {FILENAME} in one of these places, for example "
            f"'export {DATA_DIR_ENV_VAR}=/folder/with/mnist' or copy it to "
            f"{REPO_DATA_DIR / FILENAME}."
        ) from err


def scale_images(x: np.ndarray) -> np.ndarray:
    """Scale uint8 pixels in [0, 255] to float32 in [0, 1]."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(
            f"scale_images expects uint8 pixels (as load_mnist returns), got dtype {x.dtype}; "
            "if the images are already scaled, use them as they are."
        )
    return x.astype("float32") / np.float32(255.0)


def balanced_subset(
    x: np.ndarray, y: np.ndarray, size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Take ``size`` examples with (as nearly as possible) the same number from each class.

    The first ``size % num_classes`` classes get one extra example. The result is shuffled
    with ``seed``, so the same seed always gives the same subset.

    Raises
    ------
    ValueError
        If ``size`` is not positive or a class has too few examples.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}.")
    size = validate.positive_int(size, "size", example=1000)
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    base, extra = divmod(int(size), len(classes))
    chosen = []
    for i, c in enumerate(classes):
        want = base + (1 if i < extra else 0)
        idx = np.flatnonzero(y == c)
        if want > len(idx):
            raise ValueError(
                f"class {c} has {len(idx)} examples, fewer than the {want} needed for "
                f"size={size}; ask for at most {len(idx) * len(classes)}."
            )
        chosen.append(rng.choice(idx, size=want, replace=False))
    order = rng.permutation(np.concatenate(chosen))
    return x[order], y[order]
