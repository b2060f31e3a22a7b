"""DID-MDN (``data=didmdn``): 12,000 training pairs with rain-density labels and the Test1200 set.

Under ``root``:

* training: ``DID-MDN-training/Rain_Heavy/train2018new/{i}.jpg``, same for ``Rain_Medium`` and
  ``Rain_Light`` (4,000 each). Label encoding (the release's training code): **0 = heavy, 1 = medium,
  2 = light** (its test script used 1..3; we do not). Configurable as ``classes: {folder: label}``.
* test ("Rain1200" / Test1200 / ``DID-MDN-test``, configurable): 1,200 numbered JPEGs, sorted by their
  number whatever the base (0- or 1-based); their label is -1 (unknown).
* every JPEG holds BOTH images side by side: LEFT half rainy, RIGHT half clean (``order: rain_clean``),
  each 512x512 in the release (which also resizes each half to 512x512; we use the halves as stored).
* validation: ``val_holdout`` image numbers held out of training (all three densities of each), or the
  test set (capped by ``val_max``) when 0.

Every sample carries its label (``sample["label"]``, int64). Images are RGB in [0, 1].
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from src.data.paired_module import FileDataModule
from src.data.readers import ORDERS, ReadResult, didmdn_train_pairs, side_by_side_pairs, split_groups

CLASSES = {"Rain_Heavy": 0, "Rain_Medium": 1, "Rain_Light": 2}


class DIDMDNDataModule(FileDataModule):
    """DID-MDN (see the module docstring). Extra keys beyond :class:`FileDataModule`'s:

    Args:
        train_dir: training folder under ``root`` (null: no training split).
        classes: class folder -> label (default 0 heavy, 1 medium, 2 light).
        inner_dir: folder inside each class folder that holds the images.
        test_dir: test folder under ``root`` (null: no test split).
        order: ``rain_clean`` (left half rainy, as distributed) or ``clean_rain``.
        val_holdout: image numbers held out for validation (int: the last N; or a list); 0 = test set.
    """

    def __init__(
        self,
        root: str,
        train_dir: Optional[str] = "DID-MDN-training",
        classes: Optional[Mapping[str, int]] = None,
        inner_dir: str = "train2018new",
        test_dir: Optional[str] = "DID-MDN-test",
        order: str = "rain_clean",
        val_holdout: Union[int, Sequence[Any], None] = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        if order not in ORDERS:
            raise ValueError(f"data.order={order!r}: choose 'rain_clean' (left half rainy) or 'clean_rain'")
        self.train_dir, self.test_dir, self.inner_dir, self.order = train_dir, test_dir, inner_dir, order
        self.classes = {str(k): int(v) for k, v in (classes or CLASSES).items()}
        self.val_holdout = val_holdout

    def read_splits(self, stage: Optional[str] = None) -> dict[str, ReadResult]:
        out: dict[str, ReadResult] = {}
        if self.train_dir and stage not in ("test", "predict"):
            train = didmdn_train_pairs(self.path(self.train_dir), self.classes, self.inner_dir, self.order)
            kept, held = split_groups(train.pairs, self.val_holdout, key="val_holdout")
            out["train"] = train._replace(pairs=kept)
            if held:
                out["val"] = ReadResult(held, [], f"{train.source}, held out")
        if self.test_dir:
            out["test"] = side_by_side_pairs(self.path(self.test_dir), self.order)
        return out

    def swap_hint(self) -> str:
        return f"set data.order={ORDERS[1 - ORDERS.index(self.order)]}"
