"""What a network costs: parameters, multiply-accumulates, time and peak memory of a pass.

Used by ``experiments/bench_models.py`` (and the tables that print a cost column); plain torch, no framework.

* :func:`count_parameters`: every parameter of the network (trainable or not).
* :func:`count_macs`: multiply-accumulates of ONE forward pass at a given input size, counted by ptflops' ATen
  backend (each convolution, matrix product and linear layer the pass runs, whatever module or function
  issued it; element-wise operations, normalisations and activations are not counted, as in the papers'
  MACs / "FLOPs" columns). ``forward`` takes the network's own inputs: see :func:`count_macs`.
* :func:`time_pass`: median seconds of a forward (``backward=False``, in ``torch.no_grad``) or a forward +
  backward pass, device synchronised; :func:`seconds_per_megapixel` divides by the pixels of the batch.
* :func:`peak_memory`: bytes a pass needs on top of what was allocated before it. CUDA: PyTorch's peak of
  allocated memory (``torch.cuda.max_memory_allocated``). CPU: the process's peak resident memory
  (``ru_maxrss``) above its resident memory before the pass, which is only meaningful for the largest pass a
  process has run so far: measure in a fresh process, smaller pass first (``experiments/bench_models.py`` runs
  each model in its own process).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Callable, Optional

import torch
from torch import nn


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count_macs(net: nn.Module, inputs: dict) -> int:
    """Multiply-accumulates of ``net(**inputs)`` (one forward pass; ptflops' ATen backend)."""
    from ptflops import get_model_complexity_info

    shape = tuple(next(v for v in inputs.values() if torch.is_tensor(v)).shape[1:])
    was_training = net.training
    net.eval()
    try:
        macs, _ = get_model_complexity_info(
            net,
            shape,
            input_constructor=lambda _: dict(inputs),
            as_strings=False,
            print_per_layer_stat=False,
            backend="aten",
        )
    finally:
        net.train(was_training)
    if macs is None:
        raise RuntimeError(f"ptflops could not count {type(net).__name__}")
    return int(macs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_pass(net: nn.Module, inputs: dict, backward: bool) -> None:
    """One forward (no autograd) or forward + backward (of the mean of the output ``out``) pass."""
    if not backward:
        with torch.no_grad():
            net(**inputs)
        return
    net.zero_grad(set_to_none=True)
    net(**inputs)["out"].float().mean().backward()


def time_pass(net: nn.Module, inputs: dict, backward: bool, repeats: int = 3, warmup: int = 1) -> float:
    """Median seconds of :func:`run_pass` over ``repeats`` runs after ``warmup`` untimed ones."""
    device = next(v for v in inputs.values() if torch.is_tensor(v)).device
    times = []
    for k in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        run_pass(net, inputs, backward)
        _sync(device)
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def seconds_per_megapixel(seconds: float, batch: int, height: int, width: int) -> float:
    return seconds / (batch * height * width / 1e6)


def _resident_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # not Linux
        return None


def _peak_resident_bytes() -> int:
    """The process's peak resident memory: Linux's VmHWM (of this program's memory only; ``ru_maxrss`` also
    keeps the peak of the process that started it, carried over ``exec``), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss if sys.platform == "darwin" else rss * 1024


def peak_memory(fn: Callable[[], None], device: torch.device) -> Optional[int]:
    """Bytes ``fn()`` needs above what was allocated before it (see the module docstring); None where the
    process's resident memory cannot be read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    before = _resident_bytes()
    if before is None:
        return None
    fn()
    return max(0, _peak_resident_bytes() - before)
