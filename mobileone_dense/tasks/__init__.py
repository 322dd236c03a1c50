"""One adapter per task (detection, segmentation): code that differs between mmdet and mmseg
asks :func:`task_of` instead of branching on the config's scope."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Comparison, Task
from .detection import DetectionTask
from .segmentation import SegmentationTask

#: The adapters, by the OpenMMLab scope of their configs.
TASKS: dict[str, Task] = {t.scope: t for t in (DetectionTask(), SegmentationTask())}


def task_of(cfg) -> Task:
    """The adapter of a config, from its ``default_scope`` (``mmdet`` or ``mmseg``)."""
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ConfigError(f"The config's default_scope is {scope!r}: this toolkit handles "
                          f"detectors (default_scope='mmdet') and segmentors "
                          f"(default_scope='mmseg'); set it in the config.")
    return TASKS[scope]


__all__ = ['TASKS', 'Task', 'Comparison', 'DetectionTask', 'SegmentationTask', 'task_of']
