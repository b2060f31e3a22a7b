"""SPA-Data, SPANet's real rain set (``data=realrain``), read as distributed.

Under ``root``:

* training pairs from the list file ``real_world.txt``: lines ``"<rainy> <clean>"`` with paths
  ``/real_world/{scene}/{scene}-{frame}/{scene}-{frame}_{x}_{y}.png`` and
  ``/real_world_gt/{scene}/{scene}_{x}_{y}.png`` (256x256 RGB PNG patches; a leading ``/`` or ``./`` is
  stripped, paths are relative to ``root``). The published list has 638,493 lines; the lines of scene 274
  name files that do not exist: missing pairs are skipped with one warning that counts them.
* validation: the release validates on its training list; here ``val_scenes`` whole scenes are held out of
  it (an int: the last N scene ids in numeric order; or a list of ids), so no scene is in both. With
  ``val_scenes: 0`` validation uses the test set. ``val_max`` caps the number of validation patches.
* test: ``real_test_1000/rain/NNN.png`` with ``real_test_1000/gt/NNNgt.png`` (about 512x512, not all
  square), or a list file in the training list's format (``test_list``).
* ``Real_Internet``: unlabelled photos for prediction only, listed by :meth:`RealRainDataModule.internet_images`.

Images are RGB in [0, 1]; labels are -1 (no density label).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

from src.data.paired_module import FileDataModule
from src.data.readers import ReadResult, check_holdout, gt_suffix_pairs, list_images, read_pair_list, split_groups


def internet_images(root: str, folder: str = "Real_Internet") -> list[str]:
    """The unlabelled real rain photos (``{root}/Real_Internet/*``), in natural order, for prediction."""
    return list_images(os.path.join(root, folder))


class RealRainDataModule(FileDataModule):
    """SPA-Data (see the module docstring). Extra keys beyond :class:`FileDataModule`'s:

    Args:
        list_file: training list, relative to ``root`` (null: no training split).
        val_scenes: scenes held out for validation: int (last N ids) or list of ids; 0 = use the test set.
        test_dir: test folder with ``rain/`` and ``gt/`` (null: no test split).
        test_list: a list file for the test pairs instead of globbing ``test_dir``.
        internet_dir: folder of the unlabelled real photos.
    """

    def __init__(
        self,
        root: str,
        list_file: Optional[str] = "real_world.txt",
        val_scenes: Union[int, Sequence[Any], None] = 2,
        test_dir: Optional[str] = "real_test_1000",
        test_list: Optional[str] = None,
        internet_dir: str = "Real_Internet",
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        self.list_file, self.test_dir, self.test_list = list_file, test_dir, test_list
        self.val_scenes = val_scenes
        check_holdout(val_scenes, "val_scenes")
        self.internet_dir = internet_dir

    def read_splits(self, stage: Optional[str] = None) -> dict[str, ReadResult]:
        out: dict[str, ReadResult] = {}
        if self.list_file and stage not in ("test", "predict"):
            train = read_pair_list(self.path(self.list_file), self.root)
            kept, held = split_groups(train.pairs, self.val_scenes, key="val_scenes")
            out["train"] = train._replace(pairs=kept)
            if held:
                scenes = sorted({p.group for p in held})
                out["val"] = ReadResult(held, [], f"{train.source}, held-out scenes {scenes}")
        if self.test_list:
            out["test"] = read_pair_list(self.path(self.test_list), self.root)
        elif self.test_dir:
            out["test"] = gt_suffix_pairs(self.path(self.test_dir))
        return out

    def internet_images(self) -> list[str]:
        return internet_images(self.root, self.internet_dir)
