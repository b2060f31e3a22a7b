"""How src.train writes checkpoints: atomically in the checkpoint's own folder, and never with non-finite weights.

Lightning's own writer opens the destination (or a temporary file in the system's temporary folder, which it
then copies across filesystems) and writes into it, so a process killed during the write can leave
``last.ckpt`` empty with the previous good checkpoint already gone. :class:`AtomicCheckpointIO` serialises the
checkpoint into a temporary file beside the destination and renames it into place
(:func:`src.utils.files.atomic_write`): the destination always holds a complete checkpoint, old or new.

Before writing, every floating-point tensor of the model's ``state_dict`` is checked: a diverged run (NaN / inf
weights) raises :class:`~src.utils.checkpoint.NonFiniteError` naming the step and the first bad tensors, so the
last good checkpoint is kept and the run stops. Every save goes through here: best / last checkpoints, a save on
a signal, and ``trainer.save_checkpoint``. (Reading checkpoints: :mod:`src.utils.checkpoint`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from src.utils.checkpoint import NonFiniteError, require_finite_weights
from src.utils.files import atomic_write

__all__ = ["AtomicCheckpointIO", "NonFiniteError"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes via a temporary file + ``os.replace`` and refuses non-finite weights.

    Remote URLs (``s3://...``) are left to Lightning's own writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        require_finite_weights(
            checkpoint.get("state_dict", {}), f"step {checkpoint.get('global_step')}: not saving {path}"
        )
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))
