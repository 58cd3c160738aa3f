"""Test-session set-up: two logical CPU devices for the multi-device tests.

``tf.distribute.MirroredStrategy`` needs at least two devices. TensorFlow can split the CPU
into logical devices, but only before it initialises its runtime, so this happens in
``pytest_configure``, before any test module runs. Ops still run on ``/CPU:0`` unless a
strategy places them elsewhere, so single-device tests are unaffected. Nothing happens on
the JAX and PyTorch backends (TensorFlow is not imported there).
"""

from __future__ import annotations

NUM_LOGICAL_CPUS = 2


def pytest_configure(config) -> None:
    import keras  # importing keras does not start TensorFlow's runtime; listing devices does

    if keras.backend.backend() != "tensorflow":
        return
    try:
        import tensorflow as tf
    except ImportError:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
        )
    except RuntimeError:
        # Already initialised (e.g. a plugin used TensorFlow first); the multi-device tests
        # then report that they could not get two devices.
        pass
