"""Checks of a teacher/student pair and of training data that need Keras.

The :class:`kdlib.Distiller` runs them at construction (:func:`check_compatible`: logits,
one output, same input and output shapes, no shared layers) and before ``fit``/``evaluate``
(:func:`check_training_data`); :mod:`kdlib.soft_targets` checks the teacher's logits
before it caches them (:func:`check_teacher_logits`). Argument checks that need no Keras
live in :mod:`kdlib.validate`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


def applies_softmax(model: keras.Model) -> bool:
    """True if the model's last layer turns logits into probabilities with a softmax."""
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or (
        getattr(activation, "__name__", "") == "softmax"
    )


def check_logits_model(model: Any, role: str) -> None:
    """Raise if ``model`` is not a Keras model or its last layer applies softmax.

    Distillation divides *logits* by the temperature before the softmax, so a model that
    already outputs probabilities cannot be a teacher or a student.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{role} must be a keras.Model, got {type(model).__name__}; build it with "
            "keras.Sequential, the functional API or a kdlib.models factory."
        )
    if applies_softmax(model):
        raise ValueError(
            f"The {role}'s last layer ({model.layers[-1].name!r}) applies softmax, but "
            "distillation needs logits: the temperature divides the logits before the "
            "softmax. Remove the softmax (e.g. Dense(10) instead of "
            "Dense(10, activation='softmax')), or wrap the model: "
            f"keras.Model({role}.inputs, {role}.layers[-1].input) if the softmax is a "
            "separate layer."
        )


def _static(model: keras.Model, attribute: str) -> list[Any] | None:
    """``model.inputs`` or ``model.outputs`` of a built functional/Sequential model, else None."""
    try:
        tensors = getattr(model, attribute)
    except (AttributeError, ValueError):
        return None
    return list(tensors) if tensors else None


def check_single_logits_output(model: keras.Model, role: str) -> tuple[Any, ...] | None:
    """Raise unless ``model`` has one output of shape (batch, ..., num_classes >= 2).

    Returns the static output shape, or None when it is not known yet (a subclassed model
    before its first call).
    """
    outputs = _static(model, "outputs")
    if outputs is None:
        return None
    if len(outputs) != 1 or isinstance(getattr(model, "output", None), (list, tuple, dict)):
        raise ValueError(
            f"The {role} must have exactly one output (the logits), but it has "
            f"{len(outputs)} output(s) in a {type(model.output).__name__}. Distill one head "
            f"at a time: keras.Model({role}.inputs, {role}.outputs[0])."
        )
    shape = tuple(outputs[0].shape)
    if len(shape) < 2 or shape[-1] == 1:
        raise ValueError(
            f"The {role}'s output has shape {shape}, but distillation needs one logit per "
            "class: an output of shape (batch, num_classes) with num_classes >= 2."
        )
    return shape


def _input_shapes(model: keras.Model) -> list[tuple[Any, ...]] | None:
    inputs = _static(model, "inputs")
    return None if inputs is None else [tuple(i.shape) for i in inputs]


def _sublayers(model: keras.Layer) -> list[keras.Layer]:
    """Every layer inside ``model``, recursively (nested models included)."""
    found: list[keras.Layer] = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if any(layer is seen for seen in found):
            continue
        found.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return found


def check_separate_models(teacher: keras.Model, student: keras.Model) -> None:
    """Raise if teacher and student are the same model or share layers or weights.

    The teacher is frozen, so anything it shares with the student would silently stop
    training; the same model in both roles makes the loss constant.
    """
    if teacher is student:
        raise ValueError(
            "teacher and student are the same model: the teacher is frozen, so nothing "
            "would train. Build a separate student, e.g. keras.models.clone_model(teacher) "
            "for a copy, or a smaller model from kdlib.models."
        )
    teacher_layers = _sublayers(teacher)
    shared = [  # layers without weights (inputs, reshapes) are harmless to share
        layer.name
        for layer in _sublayers(student)
        if layer.weights and any(layer is t for t in teacher_layers)
    ]
    if not shared:
        teacher_weights = {id(w) for w in teacher.weights}
        shared = [w.path for w in student.weights if id(w) in teacher_weights]
    if shared:
        raise ValueError(
            f"The student shares {', '.join(map(repr, shared[:5]))} with the teacher. The "
            "teacher is frozen, so those weights would silently not train. Give the student "
            "its own layers (keras.models.clone_model copies a model without sharing)."
        )


def check_compatible(teacher: keras.Model, student: keras.Model) -> None:
    """All construction-time checks of a teacher/student pair (when shapes are known)."""
    check_logits_model(teacher, "teacher")
    check_logits_model(student, "student")
    check_separate_models(teacher, student)
    t_shape = check_single_logits_output(teacher, "teacher")
    s_shape = check_single_logits_output(student, "student")
    if t_shape is not None and s_shape is not None and t_shape[1:] != s_shape[1:]:
        raise ValueError(
            f"teacher and student outputs differ in shape: teacher {t_shape}, student "
            f"{s_shape}. Both must give one logit per class for the same classes."
        )
    t_in, s_in = _input_shapes(teacher), _input_shapes(student)
    if (
        t_in is not None
        and s_in is not None
        and (len(t_in) != len(s_in) or any(a[1:] != b[1:] for a, b in zip(t_in, s_in)))
    ):
        raise ValueError(
            f"teacher and student take different inputs: teacher {_fmt_shapes(t_in)}, "
            f"student {_fmt_shapes(s_in)}. Both see the same batch, so they need the same "
            "input shape."
        )


def _fmt_shapes(shapes: list[tuple[Any, ...]]) -> str:
    return ", ".join(str(s) for s in shapes)


def looks_like_probabilities(outputs: Any) -> bool:
    """True if every row is non-negative, at most 1 and sums to 1 (a softmax's output)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim < 2 or outputs.shape[-1] < 2 or outputs.size == 0:
        return False
    if not np.all(np.isfinite(outputs)):
        return False
    return bool(
        np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3)
        and outputs.min() >= 0.0
        and outputs.max() <= 1.0
    )


PROBABILITIES_MESSAGE = (
    "The teacher's outputs are non-negative and every row sums to 1: they look like "
    "probabilities (a softmax inside the model), but distillation needs logits. Remove the "
    "softmax from the teacher, e.g. Dense(10) instead of Dense(10, activation='softmax')."
)


def check_teacher_logits(logits: np.ndarray, n: int, origin: str) -> np.ndarray:
    """Validate the teacher's outputs before they are cached: (n, num_classes), finite, not
    probabilities. ``origin`` names the caller in the messages."""
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(
            f"The teacher's outputs have shape {logits.shape} for {n} examples ({origin}); "
            "expected (num_examples, num_classes): one logit per class."
        )
    if not np.all(np.isfinite(logits)):
        bad = int(np.sum(~np.all(np.isfinite(logits), axis=1)))
        raise ValueError(
            f"The teacher's logits are not finite for {bad} of {n} examples ({origin}); "
            "check the teacher and its inputs (e.g. unscaled images, a diverged model)."
        )
    if looks_like_probabilities(logits):
        raise ValueError(PROBABILITIES_MESSAGE)
    return logits


#: Rows of the first batch on which the teacher's outputs are checked in online mode.
SAMPLE_ROWS = 64


def is_tf_dataset(x: Any) -> bool:
    module = type(x).__module__ or ""
    return module.startswith("tensorflow") and hasattr(x, "element_spec")


def is_array_like(x: Any) -> bool:
    leaves = keras.tree.flatten(x)
    return bool(leaves) and all(hasattr(leaf, "shape") and len(leaf.shape) > 0 for leaf in leaves)


def first_dataset_batch(student: keras.Model, method: str, dataset: Any) -> tuple[Any, Any]:
    """The first batch's (x, y) of a tf.data dataset, after checking that it is batched."""
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError(
            f"Distiller.{method}() got a tf.data dataset whose elements are {spec}, not "
            "(x, y) or (x, y, sample_weight) tuples: the student's loss needs the labels. "
            "Map it first, e.g. dataset.map(lambda d: (d['image'], d['label']))."
        )
    inputs = _static(student, "inputs")
    x_specs = keras.tree.flatten(spec[0])
    if (
        inputs is not None
        and len(inputs) == len(x_specs)
        and any(
            s.shape.rank is not None and s.shape.rank == len(i.shape) - 1
            for s, i in zip(x_specs, inputs)
        )
    ):
        raise ValueError(
            f"Distiller.{method}() got an unbatched tf.data dataset: its inputs have shape "
            f"{x_specs[0].shape} but the student takes {tuple(inputs[0].shape)} (a batch "
            "axis first). Batch it, e.g. dataset.batch(32)."
        )
    if isinstance(spec[1], dict):
        return None, None  # cached targets: nothing to check
    for batch in dataset.take(1):
        return keras.tree.map_structure(lambda a: a[:SAMPLE_ROWS], batch[0]), batch[1]
    return None, None


def check_training_data(
    teacher: keras.Model, student: keras.Model, method: str, x: Any, y: Any
) -> None:
    """Clear errors before Keras starts ``fit``/``evaluate``: missing labels, an unbatched
    dataset, and (online mode) a teacher whose outputs are probabilities, from its outputs
    on the first rows (a softmax hidden in a ``Lambda``, a subclassed model, a reshape)."""
    if x is None:
        return
    if is_tf_dataset(x):
        sample_x, sample_y = first_dataset_batch(student, method, x)
    elif is_array_like(x):
        if y is None:
            raise ValueError(
                f"Distiller.{method}(x, y) got y=None: the student's loss needs the "
                "labels. Pass them (online mode), or cached targets "
                "{'labels': ..., 'teacher_logits': ...} from "
                "kdlib.soft_targets.cache_soft_targets()."
            )
        sample_x = keras.tree.map_structure(lambda a: a[:SAMPLE_ROWS], x)
        sample_y = y
    else:  # a generator or PyDataset: Keras reads it, nothing to peek at safely
        return
    if sample_x is None or isinstance(sample_y, dict):
        return  # cached mode: the logits were checked by cache_soft_targets
    outputs = ops.convert_to_numpy(teacher(sample_x, training=False))
    if looks_like_probabilities(outputs):
        raise ValueError(PROBABILITIES_MESSAGE)
