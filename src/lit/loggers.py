"""Loggers: Lightning's own, with one fix."""

from __future__ import annotations

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` without the ``anonymous`` argument it always passes to ``wandb.init``: current
    wandb ignores that setting and prints "The anonymous setting has no effect" on every run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
