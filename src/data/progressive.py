"""Progressive training: a schedule of (iteration, patch, batch) that the training loader follows exactly.

``schedule.progressive`` (``data.progressive`` once ``src.train`` binds it) is a list of stages
``{until: N, patch: P, batch: B}``: from the end of the previous stage (0 for the first) to iteration ``until``
(exclusive, 0-based ``global_step``) every training step draws ``B`` samples (the GLOBAL batch, split over the
processes) cropped to ``P x P``. Past the last ``until`` (``schedule.max_steps`` larger) the last stage goes on,
as BasicSR's progressive loop does. Restormer's schedule (8 GPUs x 8, 5, 4, 2, 1, 1 per GPU) is
``[{until: 92000, patch: 128, batch: 64}, {until: 156000, patch: 160, batch: 40}, ...]``.

What every process sees is a pure function of the global step:

* the samples form one stream: the permutations ``randperm(N, seed + e)`` of epochs ``e = 0, 1, 2, ...``
  (the same as :class:`src.data.base.ResumableSampler`'s), concatenated. Step ``s`` takes the next ``B_s``
  positions of that stream: positions ``offset(s) .. offset(s) + B_s - 1`` with ``offset(s)`` the sum of the
  batches of the steps before ``s``. A batch may straddle two epochs; no sample is dropped.
* process ``r`` of ``W`` takes every ``W``-th of them from its rank on (as a ``DistributedSampler`` shards), so
  the processes hold disjoint parts of one global batch, ``B_s / W`` each (a stage whose batch does not divide
  by ``W`` is refused, naming the key);
* each key carries the sample's index, its augmentation seed (:func:`src.data.base.sample_seed` of its epoch,
  for data sets that take one) and the stage's patch size.

So a run resumed from a checkpoint at step ``s`` continues with exactly the samples, augmentations and patch
sizes of an uninterrupted run; the checkpoint stores only ``s`` (the training loader's state).

The loader reads whole batches: :class:`ProgressiveSampler` yields one list of keys per step and
:class:`KeyBatches` turns it into a list of samples, collated as usual. The sampler is a ``DistributedSampler``,
so Lightning keeps it (it injects its own sampler only into loaders without one, ``use_distributed_sampler``),
and the loader has no ``batch_sampler`` for Lightning to re-instantiate. The whole run is one Lightning epoch
(the sampler's length is the number of steps), so the learning-rate schedule, validation and checkpoints keep
counting iterations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Iterator, NamedTuple, Optional

import torch
from torch.utils.data import Dataset, DistributedSampler

from src.utils.errors import ConfigValueError

KEY = "schedule.progressive"
FIELDS = ("until", "patch", "batch")


class Stage(NamedTuple):
    until: int  # the stage ends before this global step
    patch: int  # side of the square training crops
    batch: int  # global batch


def parse_stages(stages: Any) -> list[Stage]:
    """``schedule.progressive`` as a list of :class:`Stage`; a :class:`ConfigValueError` naming the key for
    anything else (not a non-empty list of ``{until, patch, batch}`` positive ints, ``until`` not increasing)."""
    if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence) or not stages:
        raise ConfigValueError(f"{KEY} must be null or a non-empty list of {{until, patch, batch}}, got {stages!r}")
    out: list[Stage] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or set(stage) != set(FIELDS):
            raise ConfigValueError(f"{KEY}[{i}] must have exactly the keys until, patch, batch, got {stage!r}")
        for field in FIELDS:
            value = stage[field]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigValueError(f"{KEY}[{i}].{field} must be a positive int, got {value!r}")
        if out and stage["until"] <= out[-1].until:
            raise ConfigValueError(
                f"{KEY}[{i}].until={stage['until']} must be larger than the previous stage's "
                f"({out[-1].until}): each stage ends after the one before"
            )
        out.append(Stage(stage["until"], stage["patch"], stage["batch"]))
    return out


def check_processes(stages: Sequence[Stage], world: int) -> None:
    """Every stage's global batch must split evenly over ``world`` processes."""
    for i, stage in enumerate(stages):
        if stage.batch % world:
            raise ConfigValueError(
                f"{KEY}[{i}].batch={stage.batch} (the global batch of iterations up to {stage.until}) does not "
                f"divide by the {world} processes of this run; choose a multiple of trainer.devices x num_nodes"
            )


def check_schedule_keys(stages: Sequence[Stage], batch_size: int, train_patch: Optional[int]) -> None:
    """A progressive schedule sets batch and patch per stage: ``schedule.batch_size`` must be its first stage's
    batch and ``schedule.train_patch`` unset, so that neither is silently ignored."""
    if batch_size != stages[0].batch:
        raise ConfigValueError(
            f"data.batch_size={batch_size} (schedule.batch_size) differs from {KEY}[0].batch={stages[0].batch}: "
            f"with a progressive schedule each stage sets its batch; change {KEY} instead"
        )
    if train_patch is not None:
        raise ConfigValueError(
            f"data.train_patch={train_patch} (schedule.train_patch) is set together with {KEY}: "
            f"each stage sets its patch; set schedule.train_patch=null or change {KEY}"
        )


def stage_index(stages: Sequence[Stage], step: int) -> int:
    """The stage of global step ``step`` (0-based); the last one past its ``until``."""
    for i, stage in enumerate(stages):
        if step < stage.until:
            return i
    return len(stages) - 1


def samples_before(stages: Sequence[Stage], step: int) -> int:
    """Samples drawn (over all processes) by the steps before ``step``: the stream position where it starts."""
    total, start = 0, 0
    for i, stage in enumerate(stages):
        end = stage.until if i < len(stages) - 1 else max(stage.until, step)
        total += stage.batch * max(0, min(step, end) - start)
        start = end
    return total


def schedule_table(stages: Sequence[Stage], world: int = 1) -> list[dict]:
    """The stages as rows (iterations, patch, global and per-process batch, samples), for logs and docs."""
    rows, start = [], 0
    for stage in stages:
        rows.append(
            {
                "from": start,
                "until": stage.until,
                "patch": stage.patch,
                "batch": stage.batch,
                "per_process": stage.batch // world,
                "samples": stage.batch * (stage.until - start),
            }
        )
        start = stage.until
    return rows


class ProgressiveSampler(DistributedSampler):
    """Yields, for each training step, this process's keys ``(index, sample_seed or None, patch)`` (see the
    module docstring). ``length``: the number of steps of the run; ``resume(step)``: the next iteration starts at
    global step ``step`` (a checkpoint's), and ``__len__`` stays ``length`` so that Lightning, which resumes its
    batch count at the checkpoint's, stops where an uninterrupted run does."""

    def __init__(
        self,
        dataset: Dataset,
        stages: Sequence[Stage],
        num_replicas: int,
        rank: int,
        seed: int,
        length: int,
        with_seeds: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        check_processes(stages, num_replicas)
        self.stages, self.length, self.with_seeds = list(stages), int(length), with_seeds
        self.n = len(dataset)  # type: ignore[arg-type]
        self.start = 0
        self._perm: tuple[int, list[int]] = (-1, [])

    def resume(self, step: int) -> None:
        self.start = int(step)

    def __len__(self) -> int:
        return self.length

    def _sample(self, position: int) -> tuple[int, int]:
        """(epoch, dataset index) of a position of the sample stream."""
        epoch = position // self.n
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g).tolist())
        return epoch, self._perm[1][position % self.n]

    def keys(self, step: int) -> list[tuple[int, Optional[int], int]]:
        """This process's keys of global step ``step``."""
        from src.data.base import sample_seed

        stage = self.stages[stage_index(self.stages, step)]
        first = samples_before(self.stages, step) + self.rank
        out = []
        for position in range(first, first + stage.batch, self.num_replicas):
            epoch, index = self._sample(position)
            out.append((index, sample_seed(self.seed, epoch, index) if self.with_seeds else None, stage.patch))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, Optional[int], int]]]:
        start, self.start = self.start, 0
        return (self.keys(step) for step in range(start, self.length))


class KeyBatches(Dataset):
    """A data set read one batch at a time: item ``keys`` (a list) -> the list of samples ``dataset[key]``,
    which the loader's ``collate_fn`` batches. Wraps the training set for :class:`ProgressiveSampler`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, keys: list) -> list[dict]:
        return [self.dataset[key] for key in keys]
