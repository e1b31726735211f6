# Copyright 2026 the xlstm-seg authors. Apache-2.0.
"""Checkpoints written atomically.

MONAI's ``CheckpointSaver`` disables ignite's atomic writes (for file permissions) and, with a fixed file name such as
``model.pt``, deletes the previous best file before writing the new one. A crash in between loses the model. Here every
write goes to a temporary file that replaces the old one in a single ``os.replace``; nothing is deleted first.
Checkpoints hold plain state dicts, so MONAI's ``CheckpointLoader`` reads them with ``weights_only=True``.
"""

from __future__ import annotations

from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` with atomic writes; same arguments."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is None:
                continue
            saver = checkpoint.save_handler
            saver._atomic = True  # ignite's DiskSaver: temp file + os.replace, readable by group/others
            if getattr(saver, "filename", None) is not None:
                # a fixed name is overwritten by os.replace; removing it first would open a window with no model
                saver.remove = lambda filename: None
