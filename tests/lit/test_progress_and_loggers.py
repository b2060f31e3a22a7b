"""Small user-facing fixes: the progress bar of step-counted runs and the W&B logger's init arguments."""

from __future__ import annotations

from types import SimpleNamespace

from src.lit.callbacks import StepProgressBar
from src.runs.logs import WandbLogger


def test_progress_bar_names_steps_not_epoch_minus_two():
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=-1, max_steps=60000)
    text = bar._get_train_description(3).strip()
    assert text == "Epoch 3 (of 60000 steps)" and "-2" not in text
    bar._trainer = SimpleNamespace(max_epochs=10, max_steps=-1)
    assert bar._get_train_description(3).strip() == "Epoch 3/9"


def test_wandb_logger_passes_no_anonymous_setting(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["project"] == "p"
