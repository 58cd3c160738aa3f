r"""Images shifted by whole pixels, and a transfer set of every shifted view with its soft targets.

Hinton, Vinyals & Dean (2015, arXiv:1503.02531, §3) train their MNIST teacher on images
"jittered by up to two pixels in any direction". With whole-pixel shifts there are only
``(2 * max_shift + 1) ** 2`` views of an image (25 for two pixels): view ``k`` moves the
image by ``(dy, dx) = VIEWS[k]`` pixels (down and right positive), filling with zeros.

Augmentation and *cached* soft targets do not mix, because the cache holds the teacher's
logits on the images as they were; running the teacher on every batch (online mode) costs
a teacher forward pass per student step. With so few views there is a third way: run the
teacher once on every view of every image (``views`` times the cost of caching, paid once),
and let :class:`ShiftedTransferSet` give the student a random view of each image, with the
teacher's soft targets *of that view*, every epoch. The student then sees new transfer data
every epoch at the cost of cached training, and the soft targets are exact.

NumPy only (no ``tf.data``), so it works on every Keras backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from kdlib import validate
from kdlib.distiller import LABELS_KEY, TEACHER_LOGITS_KEY, check_teacher_logits

__all__ = ["ShiftedTransferSet", "shift_images", "views", "view_logits"]


def views(max_shift: int = 2) -> list[tuple[int, int]]:
    """Every whole-pixel shift ``(dy, dx)`` with ``|dy|, |dx| <= max_shift``; view 0 is the
    most up-left, the middle one (``len // 2``) is ``(0, 0)``, the image itself."""
    m = validate.positive_int(max_shift, "max_shift", example=2) if max_shift else 0
    return [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]


def _padded(images: np.ndarray, m: int) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(
            f"images must have shape (n, height, width), got {x.shape}; e.g. MNIST's "
            "(n, 28, 28) scaled to [0, 1]."
        )
    return np.pad(x, ((0, 0), (m, m), (m, m)))


def _whole_pixels(shift: Any) -> np.ndarray:
    raw = np.asarray(shift)
    if raw.shape != (2,) and (raw.ndim != 2 or raw.shape[1:] != (2,)):
        raise ValueError(
            f"shift has shape {raw.shape} ({shift!r:.60}); give one (dy, dx), e.g. (1, -2), "
            "or an array of shape (n, 2): one (dy, dx) per image."
        )
    if raw.size and not (
        np.issubdtype(raw.dtype, np.integer)
        or (np.issubdtype(raw.dtype, np.floating) and np.all(raw == np.round(raw)))
    ):
        raise ValueError(
            f"shift must be whole pixels (integers), got {shift!r:.60}; e.g. (1, -2)."
        )
    return raw.astype(np.int64)


def shift_images(images: np.ndarray, shift: tuple[int, int] | np.ndarray) -> np.ndarray:
    """``images`` (n, h, w) moved by ``shift = (dy, dx)`` whole pixels, zeros filling in.

    ``shift`` may also be an int array of shape (n, 2): one shift per image.
    """
    s = _whole_pixels(shift)
    per_image = s.ndim == 2
    s = s.reshape(-1, 2)
    m = int(np.abs(s).max()) if s.size else 0
    x = _padded(images, m)
    n, h, w = len(x), x.shape[1] - 2 * m, x.shape[2] - 2 * m
    if per_image and len(s) != n:
        raise ValueError(f"got {len(s)} shifts for {n} images; give one (dy, dx) per image.")
    dy = np.broadcast_to(s[:, 0], (n,))
    dx = np.broadcast_to(s[:, 1], (n,))
    # output pixel (i, j) reads input pixel (i - dy, j - dx): offset m - d in the padding
    rows = (m - dy)[:, None, None] + np.arange(h)[None, :, None]
    cols = (m - dx)[:, None, None] + np.arange(w)[None, None, :]
    return x[np.arange(n)[:, None, None], rows, cols]


def view_logits(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    max_shift: int = 2,
    verbose: bool = True,
) -> np.ndarray:
    """``predict`` run on every shifted view: an array ``(n, views, ...)`` of its outputs.

    ``predict`` maps images (n, h, w) to an array with n rows, e.g.
    ``lambda x: teacher.predict(x, batch_size=1024, verbose=0)`` or an ensemble's
    ``predict_member_logits``. With ``verbose`` a progress bar counts the views.
    """
    shifts = views(max_shift)
    bar = keras.utils.Progbar(len(shifts), unit_name="view") if verbose else None
    out = []
    for k, shift in enumerate(shifts):
        outputs = np.asarray(predict(shift_images(images, shift)), dtype=np.float32)
        if outputs.ndim < 1 or len(outputs) != len(images):
            raise ValueError(
                f"predict returned shape {outputs.shape} for {len(images)} images; it must "
                "return one row per image, e.g. lambda x: teacher.predict(x, verbose=0)."
            )
        out.append(outputs)
        if bar is not None:
            bar.update(k + 1)
    return np.stack(out, axis=1)


class ShiftedTransferSet(keras.utils.PyDataset):
    """Batches of randomly shifted images: ``(x, y)``, or ``(x, {"labels", "teacher_logits"})``.

    Every epoch each image is shown once, in a new random order, as a random view
    (:func:`views`); with ``teacher_logits`` of shape ``(n, views, classes)`` (the teacher
    on every view, e.g. from :func:`view_logits`) the batch carries the logits *of the view
    shown*, as :class:`kdlib.Distiller` expects cached targets.

    Parameters
    ----------
    images : array (n, h, w)
        The transfer set, scaled as the models expect.
    labels : array (n,)
    teacher_logits : array (n, views, classes), optional
        Without it the batches are ``(x, labels)`` (a teacher or a scratch student).
    batch_size : int
    max_shift : int
        Largest shift in pixels (2: 25 views).
    seed : int
        Seed of the order and the views: after ``e`` calls of :meth:`on_epoch_end` (Keras
        calls it after every epoch, and once before the first, after reading a batch to
        learn the shapes) they are drawn from ``numpy.random.default_rng([seed, e])``.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        teacher_logits: np.ndarray | None = None,
        batch_size: int = 128,
        max_shift: int = 2,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shifts = np.asarray(views(max_shift), dtype=np.int64)
        self.max_shift = int(max_shift)
        self.images = _padded(images, self.max_shift).astype(np.float32, copy=False)
        self.labels = np.asarray(labels)
        n = len(self.images)
        if len(self.labels) != n:
            raise ValueError(f"{n} images but {len(self.labels)} labels; give one per image.")
        if teacher_logits is not None:
            t = np.asarray(teacher_logits, dtype=np.float32)
            if t.ndim != 3 or t.shape[:2] != (n, len(self.shifts)):
                raise ValueError(
                    f"teacher_logits has shape {t.shape}, expected (n, views, classes) = "
                    f"({n}, {len(self.shifts)}, classes): the teacher's logits on every view "
                    "(kdlib.shifts.view_logits) for max_shift="
                    f"{self.max_shift}."
                )
            check_teacher_logits(
                t.reshape(-1, t.shape[-1]), n * len(self.shifts), "ShiftedTransferSet"
            )
            teacher_logits = t
        self.teacher_logits = teacher_logits
        self.batch_size = validate.positive_int(batch_size, "batch_size", example=128)
        self.seed = int(seed)
        self.epoch = 0
        self._draw()

    def _draw(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.order = rng.permutation(len(self.images))
        self.view = rng.integers(0, len(self.shifts), size=len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        view = self.view[rows]
        m = self.max_shift
        h, w = self.images.shape[1] - 2 * m, self.images.shape[2] - 2 * m
        dy, dx = self.shifts[view, 0], self.shifts[view, 1]
        r = (m - dy)[:, None, None] + np.arange(h)[None, :, None]
        c = (m - dx)[:, None, None] + np.arange(w)[None, None, :]
        x = self.images[rows[:, None, None], r, c]
        y = self.labels[rows]
        if self.teacher_logits is None:
            return x, y
        return x, {LABELS_KEY: y, TEACHER_LOGITS_KEY: self.teacher_logits[rows, view]}

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._draw()
