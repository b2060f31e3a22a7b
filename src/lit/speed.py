"""Speed options of a training run (``speed.*`` in conf/train.yaml), applied to the network, not the module.

* ``channels_last``: the network's weights in NHWC memory format; convolutions then produce NHWC activations
  (faster on GPUs with tensor cores, mostly under ``trainer.precision=bf16-mixed``). The IRNN scan works on
  contiguous NCHW and converts its input; results equal the default up to float rounding.
* ``compile``: ``torch.compile`` of the network in place (``nn.Module.compile``: parameter names and so the
  checkpoints stay those of the plain network; the LightningModule, its metrics and loss are not compiled).
  The first steps are slow (compilation); results equal the default up to float rounding.

The other speed options are Lightning's and the data module's own keys:
``trainer.precision=bf16-mixed`` (autocast; the IRNN recurrence, the losses and the metrics stay float32),
``trainer.benchmark=true`` (cuDNN autotuning), ``data.pin_memory=true``, ``+data.persistent_workers=true``.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

log = logging.getLogger(__name__)


class SpeedOptions(L.Callback):
    def __init__(
        self,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str = "default",
        compile_backend: str = "inductor",
    ) -> None:
        modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        if compile_mode not in modes:
            raise ValueError(f"speed.compile_mode={compile_mode!r}: expected one of {modes}")
        self.channels_last = bool(channels_last)
        self.compile = bool(compile)
        self.compile_mode = compile_mode
        self.compile_backend = compile_backend
        self._done = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self._done:
            return
        net = pl_module.net
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
            log.info("speed.channels_last: network in NHWC memory format")
        if self.compile:
            if self.compile_backend == "inductor":
                net.compile(mode=self.compile_mode)
            else:  # e.g. "aot_eager": traced like inductor but not code-generated (a quick check of tracing)
                net.compile(backend=self.compile_backend)
            log.info(
                "speed.compile: torch.compile(network, backend=%s, mode=%s)", self.compile_backend, self.compile_mode
            )
        self._done = True
