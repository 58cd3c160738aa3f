"""kdlib: the knowledge-distillation course library.

Modules: :mod:`kdlib.losses` (softmax with temperature, KL, distillation loss),
:mod:`kdlib.distiller` (the Keras ``Distiller``), :mod:`kdlib.data` (MNIST),
:mod:`kdlib.models` (teacher and student factories), :mod:`kdlib.config` (fast mode).
"""

from kdlib.distiller import Distiller

__all__ = ["Distiller"]
__version__ = "0.1.0"
