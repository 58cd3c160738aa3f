"""MNIST loading that works offline, on CI, in JupyterLab and in Colab.

:func:`load_mnist` looks for ``mnist.npz`` in this order and uses the first file found:

1. the ``path`` argument;
2. ``$KDLIB_DATA_DIR/mnist.npz``;
3. ``data/mnist.npz`` in the repository (next to the ``kdlib`` package);
4. the Keras cache (``~/.keras/datasets/mnist.npz``, or under ``$KERAS_HOME``);
5. a download through ``keras.datasets.mnist.load_data()`` (what happens in Colab).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from kdlib import validate

#: Images and labels of one part of the data set, ``(x, y)``.
ImagesLabels = tuple[np.ndarray, np.ndarray]

FILENAME = "mnist.npz"
DATA_DIR_ENV_VAR = "KDLIB_DATA_DIR"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_KEYS = ("x_train", "y_train", "x_test", "y_test")


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


def _read_npz(path: Path) -> tuple[ImagesLabels, ImagesLabels]:
    """Read and validate an MNIST ``.npz``; raise ValueError naming the file if it is bad."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise ValueError(f"missing arrays {missing} (found {sorted(f.files)})")
            arrays = {k: f[k] for k in _KEYS}
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as err:
        raise ValueError(
            f"{path} is not a valid MNIST file ({type(err).__name__}: {err}). It may be "
            f"truncated or corrupt: delete it and put a good copy of {FILENAME} there, or "
            f"point {DATA_DIR_ENV_VAR} at a folder that holds one."
        ) from err
    _check_contents(arrays, path)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _check_contents(arrays: dict[str, np.ndarray], path: Path | str) -> None:
    problems = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            problems.append(f"x_{split}/y_{split} dtypes are {x.dtype}/{y.dtype}, not uint8")
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            problems.append(f"x_{split} has shape {x.shape}, not (n, 28, 28)")
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


def _download() -> tuple[ImagesLabels, ImagesLabels]:
    """Download through Keras (cached in the Keras cache for next time)."""
    import keras

    return keras.datasets.mnist.load_data()


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
    candidates = candidate_paths(path)
    for candidate in candidates:
        if candidate.is_file():
            return _read_npz(candidate)
    try:
        (x_train, y_train), (x_test, y_test) = _download()
    except Exception as err:  # no network, proxy, SSL, ...: all mean "no data here"
        looked = "\n  ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"MNIST is not available: no local {FILENAME} and the download failed "
            f"({type(err).__name__}: {err}).\nLooked in:\n  {looked}\n"
            f"Put {FILENAME} in one of these places, for example "
            f"'export {DATA_DIR_ENV_VAR}=/folder/with/mnist' or copy it to "
            f"{REPO_DATA_DIR / FILENAME}."
        ) from err
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    _check_contents(arrays, "the downloaded MNIST")
    return (x_train, y_train), (x_test, y_test)


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
