"""The trainer a command composes: accelerator chosen by the machine, DDP for every run with several processes.

GPU availability is mocked (torch.cuda.is_available / device_count), so both kinds of machine are checked here."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from src.runs.ddp import HydraDDPStrategy, choose_strategy
from tests.conftest import CONF

DDP = "src.runs.ddp.HydraDDPStrategy"


def trainer_cfg(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides)).trainer


@pytest.fixture
def gpus(monkeypatch):
    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_default_trainer_is_auto(gpus):
    t = trainer_cfg()
    assert (t.accelerator, t.devices, t.num_nodes) == ("auto", 1, 1)
    for n in (0, 8):
        gpus(n)
        assert choose_strategy(trainer_cfg()).get("strategy") is None  # one process: Lightning's own default


def test_the_cards_command_on_an_8_gpu_machine(gpus):
    """python -m src.train model=spanet data=realrain trainer.devices=8 -> 8-GPU Hydra-safe DDP."""
    gpus(8)
    t = choose_strategy(trainer_cfg("trainer.devices=8"))
    assert t.accelerator == "auto" and t.devices == 8
    assert t.strategy._target_ == DDP and t.sync_batchnorm is True
    t = choose_strategy(trainer_cfg("trainer.devices=-1"))  # every GPU
    assert t.strategy._target_ == DDP
    t = choose_strategy(trainer_cfg("trainer=gpu", "trainer.devices=[0,1]"))
    assert t.strategy._target_ == DDP
    t = choose_strategy(trainer_cfg("trainer.num_nodes=2"))  # one GPU per node, two nodes
    assert t.strategy._target_ == DDP
    t = choose_strategy(trainer_cfg("trainer=ddp"))
    assert (t.accelerator, t.devices, t.strategy._target_) == ("gpu", 2, DDP)


def test_devices_8_without_a_gpu_is_a_clear_error(gpus):
    gpus(0)
    with pytest.raises(ValueError, match=r"trainer.devices=8 asks for 8 devices.*no GPU.*trainer.accelerator=cpu"):
        choose_strategy(trainer_cfg("trainer.devices=8"))


def test_cpu_processes_on_purpose(gpus):
    """trainer.accelerator=cpu trainer.devices=2: DDP over 2 CPU processes, with or without GPUs present."""
    for n in (0, 4):
        gpus(n)
        t = choose_strategy(trainer_cfg("trainer.accelerator=cpu", "trainer.devices=2"))
        assert t.strategy._target_ == DDP and "sync_batchnorm" not in t
    gpus(0)
    trainer = instantiate(
        choose_strategy(trainer_cfg("trainer=cpu", "trainer.devices=2")),
        default_root_dir=".",
        max_steps=1,
        val_check_interval=1,
        logger=False,
        enable_checkpointing=False,
    )
    assert isinstance(trainer, L.Trainer) and isinstance(trainer.strategy, HydraDDPStrategy)
    assert trainer.num_devices == 2 and trainer.accelerator.__class__.__name__ == "CPUAccelerator"


def test_an_explicit_strategy_is_kept(gpus):
    gpus(8)
    t = choose_strategy(trainer_cfg("trainer.devices=8", "+trainer.strategy=fsdp"))
    assert t.strategy == "fsdp"


@pytest.mark.parametrize("n_gpus", [0, 8])
@pytest.mark.parametrize("devices", ["auto", "2", "[0,1,2]", "'0,1'"])
def test_slurm_launcher_asks_for_the_processes_ddp_starts(gpus, n_gpus, devices):
    """trainer.devices means one thing: the SLURM launcher's GPUs and tasks per node are the processes DDP starts
    (auto: every GPU, or one process without GPUs), and local_parallel gives each job that many GPUs."""
    from omegaconf import OmegaConf

    from src.runs.ddp import processes_per_node

    gpus(n_gpus)
    cpu = ["trainer.accelerator=cpu"] if n_gpus == 0 and devices != "auto" else []  # several CPU processes
    overrides = [f"trainer.devices={devices}", *cpu]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        slurm = compose(config_name="train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
        local = (
            compose(
                config_name="train", overrides=["hydra/launcher=local_parallel", *overrides], return_hydra_config=True
            )
            if devices == "auto"
            else None
        )
    launcher = OmegaConf.to_container(slurm.hydra.launcher, resolve=True)
    n, on_gpu = processes_per_node(slurm.trainer)
    assert n == {"auto": max(n_gpus, 1), "2": 2, "[0,1,2]": 3, "'0,1'": 2}[devices]
    assert launcher["tasks_per_node"] == n and on_gpu == (n_gpus > 0)
    if on_gpu:
        assert launcher["gpus_per_node"] == n
    if local is not None and on_gpu:
        assert OmegaConf.to_container(local.hydra.launcher, resolve=True)["gpus_per_job"] == n
    strategy = choose_strategy(slurm.trainer).get("strategy")
    assert (strategy is not None and strategy["_target_"] == DDP) == (n > 1)
