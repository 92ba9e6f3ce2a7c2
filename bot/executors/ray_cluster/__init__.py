"""The Ray executor (``[workers] backend = "ray"``): trainings as Ray tasks on a cluster.

``executor`` is the bot side, a Ray driver that never imports TensorFlow (``connection`` to the
cluster, a monitor thread for the runs); ``trainer`` is what runs inside the cluster. Needs the
optional extra: ``pip install 'fabulist[ray]'``.
"""

from __future__ import annotations

from bot.executors.ray_cluster.executor import RayRun, RayTrainingExecutor
from bot.executors.ray_cluster.settings import RaySettings

__all__ = ["RayRun", "RaySettings", "RayTrainingExecutor"]
