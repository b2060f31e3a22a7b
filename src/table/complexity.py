"""What each row's network costs: parameters and MACs (always, from the runs' own configs), and with
``--profile`` the inference seconds per megapixel and peak memory of one forward pass, measured on the machine
that draws the table.

The network is the one each run trained: it is built from the run's saved config (``.hydra/config.yaml`` beside
its metrics.json, as Hydra wrote it), so a shrunken or overridden model is counted as it ran, never from the
default ``conf/model/`` sizes. Weights are not loaded (counts do not depend on them). Counting uses
:mod:`src.models.profile` (parameters: every tensor of the network; MACs: ptflops' ATen backend, convolutions,
matrix products and linear layers of one forward pass of one ``3 x size x size`` image, the network's own padding
included). The network is built on PyTorch's meta device first (shapes only: no memory, no arithmetic, so the
authors' full sizes count in a second); a network that cannot run there (SPANet's IRNN checks autocast on the
tensor's device) is built on the CPU.

``--profile`` (off by default: it runs every network, which takes time, and the numbers belong to the table's
machine, not to the runs): each row's network runs in a fresh process of its own (so that the CPU's peak
resident memory is that network's alone), on ``--profile-device``: the median seconds of ``--profile-repeats``
forward passes (no autograd, eval mode, batch 1) after one untimed pass, divided by the image's megapixels, and
the peak memory of a pass above what was allocated before it (CUDA: PyTorch's allocated peak; CPU: the process's
peak resident memory). The caption names the device and thread count. The runs' own metrics.json record
training cost only (the ``cost`` block: wall time, training peak memory), no inference time, hence the
measurement.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

CONFIG = Path(".hydra") / "config.yaml"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Speed:
    """How ``--profile`` measures: on ``device`` ("cpu", "cuda"), the median of ``repeats`` timed passes."""

    device: str = "cpu"
    repeats: int = 3


@dataclass
class Complexity:
    """What the complexity columns were computed with, for the columns and the caption: the image ``size`` of
    the MACs (and of ``--profile``), ``speed`` when inference was measured, on ``machine``; ``notes``: rows left
    without numbers or with several networks."""

    size: int = 256
    speed: Optional[Speed] = None
    machine: str = ""
    notes: list[str] = field(default_factory=list)


def run_config(metrics_path: Any) -> Optional[Path]:
    """The saved config of the run whose metrics.json is ``metrics_path`` (None: not a file path, or no config)."""
    path = Path(str(metrics_path)).parent / CONFIG
    return path if path.is_file() else None


def build(config: Path, device: str) -> Any:
    """The run's model (DerainModule: its network and losses) from its saved config, without weights."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from src.runs.resolvers import register_resolvers

    register_resolvers()  # ${suite_run_dir} & co. in saved configs
    cfg = OmegaConf.load(config)
    with torch.device(device):
        return instantiate(cfg.model, init_from=None)


def network_config(config: Path) -> Any:
    """The ``model.net`` node of a saved config, resolved (to tell the networks of a row's runs apart)."""
    from omegaconf import OmegaConf

    from src.runs.resolvers import register_resolvers

    register_resolvers()
    return OmegaConf.to_container(OmegaConf.load(config).model.net, resolve=True)


def _inputs(size: int, device: str) -> dict:
    import torch

    x = torch.rand(1, 3, size, size, device=device)
    return {"rain": x, "label": torch.zeros(1, dtype=torch.long, device=device)}


def count(config: Path, size: int) -> tuple[int, int]:
    """(parameters, MACs of one forward pass of one 3 x size x size image) of the run's network."""
    from src.models import profile

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # ptflops
            # prints the traceback of a pass it could not finish
            module = build(config, "meta")
            return profile.count_parameters(module.net), profile.count_macs(module, _inputs(size, "meta"))
    except Exception:  # noqa: BLE001 - not runnable on the meta device: count on the CPU
        module = build(config, "cpu")
        return profile.count_parameters(module.net), profile.count_macs(module, _inputs(size, "cpu"))


def measure(config: str, size: int, speed: Speed) -> tuple[float, Optional[int], int, str]:
    """(seconds per megapixel, peak bytes, threads, device name) of one forward pass (see the module docstring);
    run in a fresh process."""
    import torch

    from src.models import profile
    from src.runs.cost import device_name

    device = torch.device(speed.device)
    module = build(Path(config), "cpu").to(device).eval()
    torch.manual_seed(0)
    x = _inputs(size, speed.device)
    peak = profile.peak_memory(lambda: profile.run_pass(module, x, False), device)
    seconds = profile.time_pass(module, x, False, speed.repeats, warmup=1)
    return (profile.seconds_per_megapixel(seconds, 1, size, size), peak, torch.get_num_threads(), device_name(device))


def _measure_fresh(config: Path, size: int, speed: Speed) -> tuple[float, Optional[int], int, str]:
    """:func:`measure` in a fresh Python process (``python -m src.table.complexity``)."""
    cmd = [sys.executable, "-m", "src.table.complexity", str(config), str(size), speed.device, str(speed.repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["the measuring process failed"])[-1])
    s_per_mp, peak, threads, name = json.loads(proc.stdout.strip().splitlines()[-1])
    return s_per_mp, peak, threads, name


def annotate(rows: Sequence[Any], size: int = 256, speed: Optional[Speed] = None) -> Complexity:
    """Fill each trained row's ``params``, ``macs`` (and with ``speed`` its ``s_per_mp``, ``peak_bytes``) from
    the configs of its runs (``row.configs``); notes (on stderr too) name rows whose runs trained different
    networks and rows that could not be built."""
    notes, machines = [], set()
    for row in rows:
        configs = [c for c in getattr(row, "configs", ()) if c is not None]
        if not configs:
            continue
        try:
            nets = [network_config(c) for c in configs]
            if any(n != nets[0] for n in nets[1:]):
                notes.append(
                    f"{row.data} / {row.label}: the runs trained networks of different sizes; the "
                    f"numbers are those of {configs[0]}"
                )
            row.params, row.macs = count(configs[0], size)
            if speed is not None:
                row.s_per_mp, row.peak_bytes, threads, name = _measure_fresh(configs[0], size, speed)
                machines.add(f"{name} ({speed.device}, {threads} thread{'s' if threads > 1 else ''})")
        except Exception as err:  # noqa: BLE001 - a config this suite version cannot build: say so, go on
            notes.append(
                f"{row.data} / {row.label}: cannot build the network of {configs[0]} ({type(err).__name__}: {err})"
            )
    if notes:
        print("\n".join(f"note: {n}" for n in notes), file=sys.stderr)
    return Complexity(size, speed, ", ".join(sorted(machines)), notes)


if __name__ == "__main__":  # one measurement in a fresh process: CONFIG SIZE DEVICE REPEATS -> a JSON line
    path, side, dev, repeats = sys.argv[1:5]
    print(json.dumps(measure(path, int(side), Speed(dev, int(repeats)))))
