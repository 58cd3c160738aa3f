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
:mod:`kdlib.mnist_file`; this module decides where to look.

:func:`scale_images` and :func:`balanced_subset` prepare the arrays for training.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kdlib import validate
from kdlib.mnist_file import (
    DATA_DIR_ENV_VAR,
    FILENAME,
    MNIST_FILE_SHA256,
    MNIST_URL,
    ImagesLabels,
    fetch,
    read_npz,
)

__all__ = [
    "ImagesLabels",
    "FILENAME",
    "DATA_DIR_ENV_VAR",
    "keras_cache_path",
    "candidate_paths",
    "load_mnist",
    "scale_images",
    "balanced_subset",
]

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
