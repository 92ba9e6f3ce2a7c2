"""The Ray executor (``[workers] backend = "ray"``): trainings as Ray tasks on a cluster.

``executor`` is the bot side (a Ray driver that never imports TensorFlow); ``trainer`` is what
runs inside the cluster. Needs the optional extra: ``pip install 'fabulist[ray]'``.
"""

from __future__ import annotations

from bot.executors.ray_cluster.executor import RayRun, RaySettings, RayTrainingExecutor

__all__ = ["RayRun", "RaySettings", "RayTrainingExecutor"]
