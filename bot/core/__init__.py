"""The core: the service facade and its parts, typed against the store and executor protocols.

Nothing here imports a database driver, a process pool, TensorFlow or Discord; see
docs/architecture.md.
"""
