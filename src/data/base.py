"""Base LightningDataModule shared by every data config.

Sample convention (every Dataset in ``src.data`` returns this dict):

* ``rain``  float32 tensor (3, H, W), RGB, values in [0, 1]
* ``clean`` float32 tensor (3, H, W), RGB, values in [0, 1] (same H, W as ``rain``)
* ``name``  str, a stable identifier of the pair (file stem or "<index>"), used for per-image scores
* ``label`` int64 scalar tensor: rain-density label (0 heavy, 1 medium, 2 light), -1 when unknown

Batch sizes: ``batch_size`` is the GLOBAL batch as papers count it (SPANet: 32 on 8 GPUs). Each process
loads ``batch_size // world_size`` samples; a batch that does not divide evenly is a config error.
Validation and test run on full images, one image per batch (sizes differ between images).

Shuffling is seeded and the same in one process and under DDP: the training loader uses a
:class:`ResumableSampler` (a ``DistributedSampler``: num_replicas = world size, rank = global rank, ``seed``).
Lightning keeps it (it already is one) and calls ``set_epoch(epoch)`` at every epoch start, so epoch ``e`` has
the permutation ``randperm(N, seed + e)`` split into disjoint per-rank shards whatever the run's history.

Exact resume: every checkpoint stores, as the training loader's state, the epoch and the number of
training samples each process had drawn in it; a run resumed from a mid-epoch checkpoint continues that epoch's
order where it stopped (it skips what was already drawn) instead of starting the epoch again. Datasets whose
samples are random beyond their index (the file data sets' augmentation) declare ``takes_sample_seed = True`` and
get ``(index, sample_seed)`` keys from the sampler, ``sample_seed`` a pure function of (seed, epoch, index): the
augmentation of a sample does not depend on worker processes, ranks or interruptions.

Progressive training (``progressive``: stages of (iteration, patch, batch), :mod:`src.data.progressive`): the
training loader follows the stages exactly, in DDP and across a resume; its state is the global step.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import lightning as L
import numpy as np
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from src.data.progressive import KeyBatches, ProgressiveSampler, check_schedule_keys, parse_stages
from src.data.progressive import check_processes as check_stage_processes
from src.utils.errors import ConfigValueError


def size_key(value: Any, key: str, minimum: int = 1, allow_none: bool = False) -> Optional[int]:
    """An integer config value of at least ``minimum`` (a size, a count), or a :class:`ConfigValueError` naming the
    key (``data.<key>``) when the config is built, before any training."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigValueError(
            f"{key}={value!r}: expected an integer >= {minimum}" + (" or null" if allow_none else "")
        )
    return value


def require_train_batch(n_pairs: int, batch_size: int, world: int = 1) -> int:
    """Full training batches per process and epoch; an error naming the numbers when there is none.

    Training drops incomplete batches (``drop_last``) and each of the ``world`` processes gets ``n_pairs // world``
    pairs, so a set smaller than one batch per process would "train" for zero steps and report the untrained
    network."""
    per_process = batch_size // max(1, world)
    batches = (n_pairs // max(1, world)) // max(1, per_process)
    if batches == 0:
        raise ValueError(
            f"the training set has {n_pairs} pairs, fewer than one batch per process: data.batch_size={batch_size} "
            f"(the global batch) over {world} process(es) is {per_process} pairs per process. Use a smaller "
            f"batch (schedule.batch_size) or fewer processes, or check the training data (python -m src.data.check)"
        )
    return batches


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch`` of a run seeded ``seed`` (a 63-bit int)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(2, np.uint64)[0] >> 1)


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffle, drop_last) that can start an epoch part-way and hands out sample seeds.

    ``resume(epoch, drawn)``: the next iteration of ``epoch`` skips the first ``drawn`` indices of this rank's
    shard (the samples a checkpointed run had already drawn); iterating any other epoch clears it. ``__len__``
    stays the full shard so Lightning's batch counting (which resumes at the checkpoint's batch) is unchanged.
    ``with_seeds``: yield ``(index, sample_seed(seed, epoch, index))`` instead of ``index``.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, with_seeds: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.with_seeds = with_seeds
        self._resume: Optional[tuple[int, int]] = None

    def resume(self, epoch: int, drawn: int) -> None:
        self.set_epoch(epoch)
        self._resume = (int(epoch), int(drawn))

    def __iter__(self) -> Iterator:
        indices = list(super().__iter__())
        if self._resume is not None:
            epoch, drawn = self._resume
            self._resume = None
            if epoch == self.epoch:
                indices = indices[drawn:]
        if self.with_seeds:
            return iter([(i, sample_seed(self.seed, self.epoch, i)) for i in indices])
        return iter(indices)


class _TrainLoader(DataLoader):
    """The training ``DataLoader``, resumable the way Lightning expects (``state_dict``/``load_state_dict``, saved
    in checkpoints and loaded before iterating): its state is the data module's position in the epoch order."""

    def __init__(self, datamodule: DerainDataModule, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._datamodule = datamodule

    def state_dict(self) -> dict:
        return self._datamodule._train_order_state()

    def load_state_dict(self, state: dict) -> None:
        self._datamodule._resume_train_order(state)


class DerainDataModule(L.LightningDataModule):
    """Subclasses implement :meth:`build` returning (train, val, test) datasets (test may be None)."""

    def __init__(
        self,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        eval_batch_size: int = 1,
        seed: int = 0,
        progressive: Optional[list] = None,
    ) -> None:
        """``progressive``: stages ``[{until, patch, batch}, ...]`` (``schedule.progressive``) that replace the
        fixed training batch and crop, see :mod:`src.data.progressive`; None: ``batch_size`` throughout."""
        super().__init__()
        self.seed = int(seed)
        self.batch_size = size_key(batch_size, "data.batch_size (src.train: schedule.batch_size)")
        self.num_workers = size_key(num_workers, "data.num_workers", minimum=0)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.eval_batch_size = size_key(eval_batch_size, "data.eval_batch_size")
        self.batch_size_per_device = self.batch_size
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None
        self._train_sampler: Optional[ResumableSampler | ProgressiveSampler] = None
        self.stages = parse_stages(progressive) if progressive is not None else None
        self.train_patch: Optional[int] = None  # schedule.train_patch, where a subclass takes one

    # --- to implement -------------------------------------------------------------------------
    def build(self) -> tuple[Optional[Dataset], Optional[Dataset], Optional[Dataset]]:
        raise NotImplementedError

    def gt_pairs(self, split: str = "test") -> list[tuple[str, str]]:
        """(result name, ground-truth file path) for every pair of ``split``, in order.

        This is how ``python -m src.eval pred_dir=DIR data=NAME`` finds the ground truth of a folder of results:
        a result file named ``<result name>.<any image extension>`` is scored against that ground-truth file.
        """
        raise NotImplementedError(
            f"{type(self).__name__} keeps no ground-truth files on disk; score folders with gt_dir=DIR instead"
        )

    # --- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world and self.stages is None:
            raise ValueError(
                f"data.batch_size={self.batch_size} (the global batch) is not divisible by the number of "
                f"processes ({world}); choose a batch size that is a multiple of trainer.devices x num_nodes"
            )
        self.batch_size_per_device = self.batch_size // world
        if self.train_set is None and self.val_set is None and self.test_set is None:
            self.train_set, self.val_set, self.test_set = self.build()

    def _loader(self, ds: Optional[Dataset], batch_size: int, shuffle: bool, what: str) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"{type(self).__name__} has no {what} split")
        if shuffle:
            world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
            sampler = ResumableSampler(
                ds, num_replicas=world, rank=rank, seed=self.seed, with_seeds=getattr(ds, "takes_sample_seed", False)
            )
            self._train_sampler = sampler
        elif dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # evaluation: every image exactly once over all ranks (Lightning's default sampler would pad
            # the last ranks with repeated images, which would be scored twice)
            sampler = UnrepeatedDistributedSampler(ds, shuffle=False)
        else:
            sampler = None
        kwargs = dict(
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )
        return _TrainLoader(self, ds, **kwargs) if shuffle else DataLoader(ds, **kwargs)

    # --- exact resume: the training loader's state (stored in every checkpoint by Lightning) -----------
    def _train_order_state(self) -> dict:
        """Where the training data order stands: the epoch and the samples this process drew in it so far.

        Counted from the training loop's progress (batches processed in the current epoch), not from the loader's
        iterator, which runs ahead by the batches Lightning prefetches."""
        trainer, sampler = self.trainer, self._train_sampler
        if trainer is None or sampler is None:
            return {}
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if isinstance(sampler, ProgressiveSampler):  # the whole run is one epoch: batches processed = global step
            return {"progressive_step": int(batches), "world_size": int(trainer.world_size)}
        return {
            "epoch": int(sampler.epoch),
            "samples_drawn": int(batches * self.batch_size_per_device),
            "world_size": int(trainer.world_size),
        }

    def _resume_train_order(self, state: dict) -> None:
        if not state or self._train_sampler is None:
            return
        world = self.trainer.world_size if self.trainer is not None else 1
        if state.get("world_size", world) != world:
            raise ValueError(
                f"the checkpoint was written by {state['world_size']} processes, this run has {world}: the data "
                f"order cannot continue exactly; resume with the same trainer.devices x trainer.num_nodes"
            )
        if isinstance(self._train_sampler, ProgressiveSampler):
            if "progressive_step" not in state:
                raise ValueError(
                    "the checkpoint was written by a run without schedule.progressive; resume it with its own schedule"
                )
            self._train_sampler.resume(state["progressive_step"])
            return
        self._train_sampler.resume(state["epoch"], state["samples_drawn"])

    def train_dataloader(self) -> DataLoader:
        if self.stages is not None:
            return self._progressive_loader()
        if self.train_set is not None:
            world = self.trainer.world_size if self.trainer is not None else 1
            require_train_batch(len(self.train_set), self.batch_size, world)
        return self._loader(self.train_set, self.batch_size_per_device, True, "training")

    def _progressive_loader(self) -> DataLoader:
        """The training loader of a progressive schedule: one list of keys per step (:mod:`src.data.progressive`).
        Its settings are checked here, for training only (evaluating a progressive run's checkpoint with another
        data.batch_size is fine)."""
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__} has no training split")
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        check_schedule_keys(self.stages, self.batch_size, self.train_patch)
        check_stage_processes(self.stages, world)
        accumulate = getattr(self.trainer, "accumulate_grad_batches", 1)
        if accumulate != 1:
            raise ConfigValueError(
                f"trainer.accumulate_grad_batches={accumulate} with schedule.progressive: the "
                f"stages count iterations of one batch each; leave it at 1"
            )
        largest = max(range(len(self.stages)), key=lambda i: self.stages[i].batch)
        if len(self.train_set) < self.stages[largest].batch:
            raise ValueError(
                f"the training set has {len(self.train_set)} pairs, fewer than one batch of "
                f"schedule.progressive[{largest}].batch={self.stages[largest].batch}"
            )
        max_steps = getattr(self.trainer, "max_steps", -1) if self.trainer else -1
        sampler = ProgressiveSampler(
            self.train_set,
            self.stages,
            world,
            rank,
            self.seed,
            length=max(self.stages[-1].until, max_steps or 0),
            with_seeds=getattr(self.train_set, "takes_sample_seed", False),
        )
        self._train_sampler = sampler
        return _TrainLoader(
            self,
            KeyBatches(self.train_set),
            batch_size=None,
            sampler=sampler,
            collate_fn=default_collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, False, "validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set or self.val_set, self.eval_batch_size, False, "test")
