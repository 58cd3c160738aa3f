"""kdlib.shifts: whole-pixel shifts against a hand-built reference (np.roll, then the pixels
that wrapped around set to zero), the shifted transfer set's batches, epochs and draws, and
clear errors for bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from kdlib.shifts import ShiftedTransferSet, shift_images, view_logits, views

H, W, N, CLASSES = 7, 5, 23, 4


def reference_shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` moved down by dy and right by dx (negative: up, left), zeros coming in."""
    out = np.roll(images, (dy, dx), axis=(1, 2))
    if dy > 0:
        out[:, :dy] = 0
    elif dy < 0:
        out[:, dy:] = 0
    if dx > 0:
        out[:, :, :dx] = 0
    elif dx < 0:
        out[:, :, dx:] = 0
    return out


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return (1.0 + rng.random((N, H, W))).astype("float32")  # no zero pixel of its own


def test_views_are_every_whole_pixel_shift():
    two = views(2)
    assert len(two) == 25 and len(set(two)) == 25
    assert two[0] == (-2, -2) and two[len(two) // 2] == (0, 0)
    assert {abs(v) for shift in two for v in shift} == {0, 1, 2}
    assert views(0) == [(0, 0)] and len(views(1)) == 9


@pytest.mark.parametrize("shift", [(0, 0), (1, 0), (0, -1), (2, -2), (-1, 2), (-3, 1)])
def test_shift_images_matches_roll_and_zeros(images, shift):
    shifted = shift_images(images, shift)
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    np.testing.assert_array_equal(shifted, reference_shift(images, *shift))


def test_one_shift_per_image(images):
    rng = np.random.default_rng(1)
    shifts = rng.integers(-2, 3, size=(N, 2))
    shifted = shift_images(images, shifts)
    for i, (dy, dx) in enumerate(shifts):
        np.testing.assert_array_equal(shifted[i], reference_shift(images[i : i + 1], dy, dx)[0])


@pytest.mark.parametrize(
    ("make_args", "fragments"),
    [
        (lambda x: (x[0], (1, 1)), ["(7, 5)", "(n, height, width)"]),
        (lambda x: (x, np.zeros((3, 2), int)), ["3 shifts", f"{N} images"]),
        (lambda x: (x, (1, 1, 1)), ["(1, 1, 1)", "(dy, dx)"]),
        (lambda x: (x, (0.5, 1)), ["0.5", "whole pixels"]),
    ],
    ids=["one-image", "shift-count", "shift-shape", "fraction"],
)
def test_shift_images_refuses_bad_shapes(images, make_args, fragments):
    with pytest.raises(ValueError) as info:
        shift_images(*make_args(images))
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_view_logits_stacks_every_view(images):
    calls = []

    def predict(x):
        calls.append(len(x))
        return x.reshape(len(x), -1)[:, :CLASSES] * 2.0

    table = view_logits(predict, images, max_shift=1, verbose=False)
    assert table.shape == (N, 9, CLASSES) and table.dtype == np.float32
    assert calls == [N] * 9
    for k, (dy, dx) in enumerate(views(1)):
        expected = reference_shift(images, dy, dx).reshape(N, -1)[:, :CLASSES] * 2.0
        np.testing.assert_array_equal(table[:, k], expected)


def view_table(images: np.ndarray, max_shift: int) -> np.ndarray:
    """A fake teacher that tells views apart: logit c of view k is k + 100 * image index
    + c / 10, so every (image, view) pair has its own logits."""
    v = len(views(max_shift))
    index = np.arange(len(images))[:, None, None]
    return (100.0 * index + np.arange(v)[None, :, None] + np.arange(CLASSES) / 10).astype(
        "float32"
    )


def test_batches_are_the_drawn_views_with_their_logits(images):
    labels = np.arange(N) % CLASSES
    table = view_table(images, 2)
    data = ShiftedTransferSet(images, labels, table, batch_size=5, max_shift=2, seed=3)
    assert len(data) == 5  # ceil(23 / 5)
    grid = views(2)
    seen = []
    for b in range(len(data)):
        x, y = data[b]
        rows = data.order[b * 5 : (b + 1) * 5]
        drawn = data.view[rows]
        expected_x = shift_images(images[rows], np.asarray([grid[k] for k in drawn]))
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y["labels"], labels[rows])
        np.testing.assert_array_equal(y["teacher_logits"], table[rows, drawn])
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(N))  # every image once per epoch
    assert len(set(data.view.tolist())) > 5  # views are drawn, not all the same


def test_a_new_order_and_new_views_every_epoch_and_the_same_for_the_same_seed(images):
    labels = np.zeros(N, int)
    data = ShiftedTransferSet(images, labels, batch_size=8, seed=0)
    first_order, first_view = data.order.copy(), data.view.copy()
    x, y = data[0]
    assert x.shape == (8, H, W) and y.shape == (8,)  # no teacher: (x, labels)
    data.on_epoch_end()
    assert not np.array_equal(data.order, first_order)
    assert not np.array_equal(data.view, first_view)
    again = ShiftedTransferSet(images, labels, batch_size=8, seed=0)
    np.testing.assert_array_equal(again.order, first_order)
    np.testing.assert_array_equal(again.view, first_view)


@pytest.mark.parametrize(
    ("make_kwargs", "fragments"),
    [
        (lambda x: {"images": x[..., None]}, ["(23, 7, 5, 1)", "(n, height, width)"]),
        (lambda x: {"labels": np.zeros(N - 1)}, ["23 images", "22 labels"]),
        (
            lambda x: {"teacher_logits": np.zeros((N, 9, CLASSES))},
            ["(23, 9, 4)", "(23, 25, classes)", "view_logits", "max_shift=2"],
        ),
        (
            lambda x: {"teacher_logits": np.full((N, 25, CLASSES), np.nan)},
            ["not finite"],
        ),
        (lambda x: {"batch_size": 0}, ["batch_size", "0"]),
    ],
    ids=["images", "labels", "logits-views", "logits-nan", "batch-size"],
)
def test_transfer_set_refuses_bad_input(images, make_kwargs, fragments):
    kwargs = {"images": images, "labels": np.zeros(N, int), **make_kwargs(images)}
    with pytest.raises(ValueError) as info:
        ShiftedTransferSet(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


class RecordingTransferSet(ShiftedTransferSet):
    """Records the rows and views of every batch Keras reads, by the draw they came from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = []

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        self.read.append((self.epoch, rows.tolist(), self.view[rows].tolist()))
        return super().__getitem__(index)


def test_a_distiller_trains_on_the_transfer_set(images):
    """The batches are what kdlib.Distiller takes in cached mode (a PyDataset, any backend);
    every training epoch reads each image once, from a draw of its own. (Keras reads a
    batch or two before training to learn the shapes, then calls on_epoch_end.)"""
    import keras

    from kdlib import Distiller, models

    keras.utils.set_random_seed(0)
    teacher = models.mlp(hidden=(8,), input_shape=(H, W), num_classes=CLASSES, name="t")
    student = models.mlp(hidden=(4,), input_shape=(H, W), num_classes=CLASSES, name="s")
    table = view_logits(
        lambda x: teacher.predict(x, verbose=0), images, max_shift=1, verbose=False
    )
    data = RecordingTransferSet(images, np.arange(N) % CLASSES, table, batch_size=8, max_shift=1)
    distiller = Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer="sgd", alpha=0.5, temperature=2.0)
    history = distiller.fit(data, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["distillation_loss"]))
    by_draw = {}
    for draw, rows, drawn_views in data.read:
        by_draw.setdefault(draw, ([], []))
        by_draw[draw][0].extend(rows)
        by_draw[draw][1].extend(drawn_views)
    full = [draw for draw, (rows, _) in by_draw.items() if len(rows) >= N]
    assert len(full) == 2  # the two training epochs
    for draw in full:
        rows, _ = by_draw[draw]
        assert sorted(rows) == list(range(N))
    (rows_a, views_a), (rows_b, views_b) = (by_draw[d] for d in full)
    assert rows_a != rows_b
    order_a = dict(zip(rows_a, views_a))
    assert [order_a[r] for r in range(N)] != [dict(zip(rows_b, views_b))[r] for r in range(N)]
