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
``DistributedSampler`` built here (num_replicas = world size, rank = global rank, ``seed``). Lightning keeps it
(it already is one) and calls ``set_epoch(epoch)`` at every epoch start, also after a resume, so epoch ``e`` has
the permutation ``randperm(N, seed + e)`` split into disjoint per-rank shards whatever the run's history. A run
resumed from a mid-epoch checkpoint starts that epoch's order again from its beginning (Lightning warns).
"""

from __future__ import annotations

from typing import Optional

import lightning as L
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler


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
            f"batch (schedule.batch_size) or fewer processes, or check the training data (python -m src.data.check)")
    return batches


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
    ) -> None:
        super().__init__()
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.eval_batch_size = int(eval_batch_size)
        self.batch_size_per_device = self.batch_size
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None

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
        if self.batch_size % world:
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
            sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                         drop_last=True)
        elif dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # evaluation: every image exactly once over all ranks (Lightning's default sampler would pad
            # the last ranks with repeated images, which would be scored twice)
            sampler = UnrepeatedDistributedSampler(ds, shuffle=False)
        else:
            sampler = None
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is not None:
            world = self.trainer.world_size if self.trainer is not None else 1
            require_train_batch(len(self.train_set), self.batch_size, world)
        return self._loader(self.train_set, self.batch_size_per_device, True, "training")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, False, "validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set or self.val_set, self.eval_batch_size, False, "test")
