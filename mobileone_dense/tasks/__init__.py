"""One adapter per task (detection, segmentation): code that differs between mmdet and mmseg
asks :func:`task_of` instead of branching on the config's scope."""
from __future__ import annotations

from ..apis import config_scope
from .base import Comparison, Task
from .detection import DetectionTask
from .segmentation import SegmentationTask

#: The adapters, by the OpenMMLab scope of their configs.
TASKS: dict[str, Task] = {t.scope: t for t in (DetectionTask(), SegmentationTask())}


def task_of(cfg) -> Task:
    """The adapter of a config, from its ``default_scope`` (``mmdet`` or ``mmseg``)."""
    return TASKS[config_scope(cfg)]


__all__ = ['TASKS', 'Task', 'Comparison', 'DetectionTask', 'SegmentationTask', 'task_of']
