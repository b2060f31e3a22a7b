"""Lightning data modules over image files: the shared base and the generic ``data=paired`` module.

:class:`FileDataModule` is what ``realrain``, ``didmdn`` and ``paired`` have in common:

* ``root`` (required; a config with ``root: ???`` fails with "set data.root=DIR"),
* the training augmentation from the ``train_transform`` block (see :func:`src.data.transforms.build_train_transform`),
  its cropping replaced by plain ``train_patch`` crops and its flips by ``train_flips`` when a recipe sets them
  (``src.train`` passes ``schedule.train_patch`` / ``schedule.train_flips``); with ``progressive`` stages
  (``schedule.progressive``) plain crops of the largest stage patch, mirrored first when an image is smaller
  (BasicSR's loader), then each sample cut to its stage's patch (:mod:`src.data.progressive`);
  validation and test use full images, untouched (the Lightning module pads for the network),
* missing TRAINING pairs skipped with ONE warning that counts them; a validation / test pair with a missing file
  is an error (the split would be scored on fewer images than it holds); an empty split is an error naming its
  source,
* the orientation guard: on ``orientation_samples`` evenly spaced pairs of each source the rainy image must be
  brighter on average (rain brightens pixels), otherwise an error suggests the swap setting
  (``check_orientation: false`` turns it off),
* ``val_max``: validation on at most that many pairs, evenly spaced (full-image validation is slow),
* seeded shuffling, the same in one process and in DDP (see :mod:`src.data.base`),
* ``on_bad_file``: ``raise`` (default) stops at an unreadable training file; ``skip`` replaces it by the next
  pair and counts it (the count and the first files go into the run's metrics.json, ``bad_files``);
  validation and test files always raise.

Subclasses implement :meth:`FileDataModule.read_splits`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence, Union

from torch.utils.data import Dataset

from src.data.base import DerainDataModule
from src.data.paired import PairedDataset, check_orientation
from src.data.readers import (
    LAYOUTS,
    ORDERS,
    ReadResult,
    check_holdout,
    evenly_spaced,
    read_layout,
    require_pairs,
    split_groups,
    warn_missing,
)
from src.data.transforms import build_train_transform, with_train_flips, with_train_patch

logger = logging.getLogger(__name__)


def require_root(root: Any) -> str:
    """``data.root`` as a str; a clear error when it is unset (``???``) or not a folder."""
    if root is None or str(root).strip() in ("", "???"):
        raise ValueError("data.root is not set: pass data.root=DIR (the folder that holds the data set)")
    root = os.path.expanduser(str(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.root: folder not found: {root}")
    return root


def count_key(value: Any, key: str, allow_none: bool = False) -> Optional[int]:
    """A non-negative integer config value (``data.<key>``), or a ValueError naming the key."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.{key}={value!r}: expected a non-negative integer" + (" or null" if allow_none else ""))
    return value


class FileDataModule(DerainDataModule):
    """Base of the file-based data modules (see the module docstring)."""

    def __init__(
        self,
        root: str,
        train_transform: Optional[Mapping[str, Any]] = None,
        train_patch: Optional[int] = None,
        train_flips: Optional[Mapping[str, bool]] = None,
        val_max: Optional[int] = None,
        swap: bool = False,
        check_orientation: bool = True,
        orientation_samples: int = 16,
        on_bad_file: str = "raise",
        seed: int = 0,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, **loader_kwargs)
        self.root = require_root(root)
        if self.stages is not None:  # progressive: the largest patch, mirrored when larger than an image
            self.train_patch = train_patch  # refused with the stages when training (check_schedule_keys)
            largest = max(s.patch for s in self.stages)
            train_transform = with_train_patch(train_transform, largest, pad=True)
            logger.info(
                "schedule.progressive: training on random %sx%s crops (mirrored where an image is smaller), "
                "each cut to its stage's patch",
                largest,
                largest,
            )
        if on_bad_file not in ("raise", "skip"):
            raise ValueError(
                f"data.on_bad_file={on_bad_file!r}: choose 'raise' (stop at the first unreadable "
                f"training file) or 'skip' (skip and count them)"
            )
        self.on_bad_file = on_bad_file
        if train_patch is not None:  # a recipe's patch size (schedule.train_patch) wins over the data config's crop
            train_transform = with_train_patch(train_transform, train_patch)
            logger.info(
                "schedule.train_patch=%s: training on random %sx%s crops (data.train_transform's "
                "scale / resized_crop / crop replaced)",
                train_patch,
                train_patch,
                train_patch,
            )
        if train_flips is not None:  # a recipe's flips (schedule.train_flips) win over the data config's
            train_transform = with_train_flips(train_transform, train_flips)
            logger.info("schedule.train_flips=%s: replaces data.train_transform's flips", dict(train_flips))
        self.train_transform = build_train_transform(**dict(train_transform or {}))
        self.val_max = count_key(val_max, "val_max", allow_none=True)
        self.swap = bool(swap)
        self.check_orientation = bool(check_orientation)
        self.orientation_samples = count_key(orientation_samples, "orientation_samples")
        self._stage: Optional[str] = None

    # --- to implement ---------------------------------------------------------------------------------
    def read_splits(self, stage: Optional[str] = None) -> dict[str, ReadResult]:
        """Read the pair lists: {"train"|"val"|"test"|"pairs": ReadResult}; absent key = split not configured.

        ``stage`` "test"/"predict" means only the test split is needed (a subclass may skip the rest).
        Raises FileNotFoundError naming a missing folder or list file.
        """
        raise NotImplementedError

    def swap_hint(self) -> str:
        """The setting that exchanges rainy and clean, quoted by the orientation guard."""
        return "set data.swap=true"

    # --- shared ---------------------------------------------------------------------------------------
    def path(self, sub: str) -> str:
        return os.path.join(self.root, sub)

    def splits(self, stage: Optional[str] = None) -> dict[str, ReadResult]:
        """:meth:`read_splits` with ``swap`` applied."""
        results = self.read_splits(stage)
        if self.swap:
            results = {k: r._replace(pairs=[p.swapped() for p in r.pairs]) for k, r in results.items()}
        return results

    def setup(self, stage: Optional[str] = None) -> None:
        self._stage = stage
        super().setup(stage)

    def build(self) -> tuple[Optional[Dataset], Optional[Dataset], Optional[Dataset]]:
        results = self.splits(self._stage)
        pairs = {}
        for split, result in results.items():
            if result.missing and split in ("val", "test", "pairs"):  # the benchmark itself: nothing may be dropped
                raise FileNotFoundError(
                    f"{split} ({result.source}): {len(result.missing)} of {len(result.missing) + len(result.pairs)} "
                    f"pairs have a missing file (first: {result.missing[0]}); the {split} split would be scored on "
                    f"fewer images than it holds. Restore the files (python -m src.data.check lists them)"
                )
            warn_missing(result, f"{split} ({result.source})")
            pairs[split] = require_pairs(result, f"{split} ({result.source})")
        if self.check_orientation:
            for split, split_pairs in pairs.items():
                check_orientation(
                    split_pairs,
                    self.orientation_samples,
                    f"{split} ({results[split].source})",
                    self.swap_hint(),
                    skip_unreadable=split == "train" and self.on_bad_file == "skip",
                )
        if "pairs" in pairs:  # one folder: every split reads it
            pairs = {"train": pairs["pairs"], "test": pairs["pairs"]}
        train = PairedDataset(pairs["train"], self.train_transform, self.on_bad_file) if "train" in pairs else None
        test = PairedDataset(pairs["test"]) if "test" in pairs else None
        val_pairs = pairs.get("val") or pairs.get("test")
        val = PairedDataset(evenly_spaced(val_pairs, self.val_max)) if val_pairs else None
        return train, val, test

    def gt_pairs(self, split: str = "test") -> list[tuple[str, str]]:
        """(name, clean file) of every pair of ``split`` ("test" | "val" | "train"), in loader order, for
        scoring a folder of results (``src.eval pred_dir=...``). Reads the splits if not done yet.
        Side-by-side sets have no ground-truth FILE (it is half of an image): an error says so."""
        if split not in ("test", "val", "train"):
            raise ValueError(f"split={split!r}: expected 'test', 'val' or 'train'")
        if self.train_set is None and self.val_set is None and self.test_set is None:
            self.setup({"test": "test", "val": "validate", "train": "fit"}[split])
        ds = {"test": self.test_set or self.val_set, "val": self.val_set, "train": self.train_set}[split]
        if ds is None:
            raise RuntimeError(f"{type(self).__name__} has no {split} split (data.root={self.root})")
        pairs = [ds.pair(i) for i in range(len(ds))]
        if pairs and pairs[0].halves is not None:
            raise ValueError(
                f"{pairs[0].rain}: the {split} pairs are side-by-side images, so their ground truth is "
                f"half of a file, not a file; evaluate a checkpoint instead (src.eval ckpt_path=...)"
            )
        return [(p.name, p.clean) for p in pairs]


class PairedDataModule(FileDataModule):
    """Generic reader of the common paired layouts (``data=paired`` and the named configs built on it).

    Layouts (``layout``): ``rain100`` (``rain-N`` / ``norain-N``, padded or not), ``rain200``
    (``rain/X2/norain-Nx2`` with ``norain/norain-N``), ``same_names`` (``rain_dir`` and ``clean_dir`` with
    identical file names), ``rain1400`` (``{i}_{j}`` with ``{i}``), ``side_by_side`` (one image per pair,
    ``order`` = ``rain_clean``: left half rainy (DID-MDN), ``clean_rain``: left half clean (Rain800)).

    ``train_dir`` / ``val_dir`` / ``test_dir`` are sub-folders of ``root`` (null: absent). With none of them
    set, ``root`` itself is one folder of pairs used for every split (e.g. to evaluate on a folder).
    Without ``val_dir``, validation holds out ``val_holdout`` clean images of the training set (an int: the
    last N; or a list of group ids) or, when 0, uses the test split.
    """

    def __init__(
        self,
        root: str,
        layout: str,
        train_dir: Optional[str] = None,
        val_dir: Optional[str] = None,
        test_dir: Optional[str] = None,
        rain_dir: Optional[str] = None,
        clean_dir: Optional[str] = None,
        order: str = "rain_clean",
        val_holdout: Union[int, Sequence[str], None] = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        self.layout, self.order = layout, order
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.rain_dir, self.clean_dir = rain_dir, clean_dir
        self.val_holdout = val_holdout
        check_holdout(val_holdout, "val_holdout")
        if layout not in LAYOUTS:
            raise ValueError(f"data.layout={layout!r}: choose from {list(LAYOUTS)}")
        if order not in ORDERS:
            raise ValueError(f"data.order={order!r}: choose 'rain_clean' (left half rainy) or 'clean_rain'")

    def _read(self, sub: str) -> ReadResult:
        return read_layout(self.path(sub), self.layout, self.rain_dir, self.clean_dir, self.order)

    def read_splits(self, stage: Optional[str] = None) -> dict[str, ReadResult]:
        if not any(self.dirs.values()):
            return {"pairs": read_layout(self.root, self.layout, self.rain_dir, self.clean_dir, self.order)}
        wanted = ("test",) if stage in ("test", "predict") and self.dirs["test"] else ("train", "val", "test")
        out = {split: self._read(self.dirs[split]) for split in wanted if self.dirs[split]}
        if "train" in out and not self.dirs["val"] and self.val_holdout:
            kept, held = split_groups(out["train"].pairs, self.val_holdout, key="val_holdout")
            out["train"] = out["train"]._replace(pairs=kept)
            out["val"] = ReadResult(held, [], f"{out['train'].source}, held out")
        return out

    def swap_hint(self) -> str:
        if self.layout == "side_by_side":
            return f"set data.order={ORDERS[1 - ORDERS.index(self.order)]}"
        return "set data.swap=true"
