"""What the Ray executor is configured with (``[workers]`` ray keys, see bot/config.py)."""

from __future__ import annotations

from dataclasses import dataclass

# Object store of a local cluster the bot starts itself: models are megabytes, not gigabytes.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class RaySettings:
    """How to reach the cluster and what one training asks of it."""

    address: str | None = None  # None: the driver process starts a local cluster
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_concurrent_jobs: int = 1
    keras_backend: str | None = None  # KERAS_BACKEND of the trainings; None: the nodes' default
    # Only for a local cluster the bot starts (address None).
    local_cpus: int | None = None  # None: enough for max_concurrent_jobs
    local_object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES
    # How long ``start`` waits for the first connection before the bot goes on without it.
    connect_wait_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.cpus_per_job <= 0:
            raise ValueError("cpus_per_job must be positive")
        if self.gpus_per_job < 0 or (self.gpus_per_job > 1 and not self.gpus_per_job.is_integer()):
            raise ValueError("gpus_per_job must be 0, a fraction of one GPU, or whole GPUs")
        if self.max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")

    def env_vars(self) -> dict[str, str]:
        env: dict[str, str] = {"TF_CPP_MIN_LOG_LEVEL": "2"}
        if self.keras_backend is not None:
            env["KERAS_BACKEND"] = self.keras_backend
        if self.gpus_per_job > 0:
            # Several jobs may share a GPU (fractional num_gpus): no backend may grab all of it.
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        return env
