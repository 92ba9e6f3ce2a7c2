"""The only module that touches a Keras backend directly (TensorFlow-specific settings).

Everything else in ``model/`` uses ``keras.*`` APIs only, so it also runs with
``KERAS_BACKEND=jax``; here TensorFlow calls are guarded by the active backend.
"""

from __future__ import annotations

import logging

import keras

logger = logging.getLogger(__name__)


def backend_name() -> str:
    return str(keras.backend.backend())


def make_deterministic() -> None:
    """Ask the backend for deterministic kernels (seeded runs). JAX on CPU already is."""
    if backend_name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def compiles_now() -> bool:
    """Whether Keras XLA-compiles a model compiled now: not under TensorFlow's op determinism,
    which a seeded run turns on for the rest of its process. JAX compiles every run."""
    if backend_name() != "tensorflow":
        return True
    # No public getter; Keras' own check (keras.src.trainers.trainer) reads this one.
    from tensorflow.python.framework import config as tf_config

    return not tf_config.is_op_determinism_enabled()


def set_threads(intra_op: int | None = None, inter_op: int | None = None) -> None:
    """TensorFlow thread pools (must run before the first op); no-op on other backends."""
    if backend_name() != "tensorflow":
        return
    import tensorflow as tf

    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        logger.warning("TensorFlow thread settings ignored: TensorFlow is already initialized")
