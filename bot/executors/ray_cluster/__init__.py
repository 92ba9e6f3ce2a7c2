"""The Ray executor (``[workers] backend = "ray"``): trainings as Ray tasks on a cluster.

``executor`` is the bot side, which imports neither Ray nor TensorFlow: it owns a spawned Ray
driver process (``driver_process``: its ``connection`` to the cluster and the ``task_monitor``
of the running tasks); ``trainer`` is what runs inside the cluster. Needs the optional extra:
``pip install 'fabulist[ray]'``.
"""

from __future__ import annotations

from bot.executors.ray_cluster.executor import RayRun, RayTrainingExecutor
from bot.executors.ray_cluster.settings import RaySettings

__all__ = ["RayRun", "RaySettings", "RayTrainingExecutor"]
