"""The process a run lives in: W&B mode, matmul precision, a quiet console; closing W&B after a job."""

from __future__ import annotations

import netrc
import os

import torch
from omegaconf import DictConfig

from src.runs.compat import quiet_known_noise


def wandb_default_mode() -> None:
    """W&B offline unless the user chose a mode or is logged in (WANDB_API_KEY or a ~/.netrc entry)."""
    if "WANDB_MODE" in os.environ:
        return
    logged_in = bool(os.environ.get("WANDB_API_KEY"))
    if not logged_in:
        try:
            logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            pass
    os.environ["WANDB_MODE"] = "online" if logged_in else "offline"


def setup_environment(cfg: DictConfig) -> None:
    wandb_default_mode()
    quiet_known_noise()
    if torch.cuda.is_available() and cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)


def finish_wandb() -> None:
    """Close the W&B run so the next job of a sweep starts its own run."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
