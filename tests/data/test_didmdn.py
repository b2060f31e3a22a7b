"""data=didmdn on a DID-MDN look-alike tree: labels, numeric test order, exact halves, orientation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.didmdn import DIDMDNDataModule
from tests.data.conftest import build_didmdn

NO_AUG = {"crop": None}


def _decode(path):
    return np.array(Image.open(path).convert("RGB"))


def test_labels_counts_and_batches(didmdn_tree):
    dm = DIDMDNDataModule(str(didmdn_tree.root), train_transform={"crop": 16, "hflip": True}, batch_size=9, val_max=5)
    dm.setup("fit")
    assert len(dm.train_set) == 9 and len(dm.test_set) == 12 and len(dm.val_set) == 5
    labels = {dm.train_set.pair(i).name: dm.train_set[i]["label"].item() for i in range(9)}
    assert labels == {
        f"{cls}/{i}": lab for cls, lab in (("Rain_Heavy", 0), ("Rain_Medium", 1), ("Rain_Light", 2)) for i in range(3)
    }
    batch = next(iter(dm.train_dataloader()))
    assert batch["rain"].shape == (9, 3, 16, 16) and batch["label"].dtype == torch.int64
    assert Counter(batch["label"].tolist()) == {0: 3, 1: 3, 2: 3}


@pytest.mark.parametrize("base", [0, 1])
def test_test_set_sorted_numerically_with_exact_halves(tmp_path, base):
    tree = build_didmdn(tmp_path / "d", n_train=1, n_test=12, test_base=base)
    dm = DIDMDNDataModule(str(tree.root), train_transform=NO_AUG)
    dm.setup("test")
    assert [dm.test_set.pair(i).name for i in range(12)] == [str(base + k) for k in range(12)]
    s = dm.test_set[10]  # file "10+base": its LEFT half is rainy, RIGHT half clean
    both = _decode(tree.root / f"DID-MDN-test/{10 + base}.jpg")
    assert both.shape == (24, 64, 3) and s["rain"].shape == s["clean"].shape == (3, 24, 32)
    torch.testing.assert_close(s["rain"], torch.from_numpy(both[:, :32]).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(s["clean"], torch.from_numpy(both[:, 32:]).permute(2, 0, 1).float() / 255)
    assert s["label"].item() == -1


def test_holdout_keeps_numbers_out_of_training(didmdn_tree):
    dm = DIDMDNDataModule(str(didmdn_tree.root), val_holdout=1, train_transform=NO_AUG)
    dm.setup("fit")
    val = sorted(dm.val_set.pair(i).name for i in range(len(dm.val_set)))
    assert val == ["Rain_Heavy/2", "Rain_Light/2", "Rain_Medium/2"] and len(dm.train_set) == 6


def test_orientation_guard_suggests_order(didmdn_tree):
    with pytest.raises(ValueError, match=r"look swapped: set data.order=rain_clean"):
        DIDMDNDataModule(str(didmdn_tree.root), order="clean_rain").setup("fit")
    dm = DIDMDNDataModule(str(didmdn_tree.root), order="clean_rain", check_orientation=False, train_transform=NO_AUG)
    dm.setup("fit")
    s = dm.train_set[0]
    both = _decode(didmdn_tree.root / "DID-MDN-training/Rain_Heavy/train2018new/0.jpg")
    torch.testing.assert_close(s["clean"], torch.from_numpy(both[:, :32]).permute(2, 0, 1).float() / 255)


def test_config_keys(didmdn_tree, tmp_path):
    with pytest.raises(ValueError, match="data.order='x'"):
        DIDMDNDataModule(str(didmdn_tree.root), order="x")
    with pytest.raises(
        FileNotFoundError, match="side-by-side image folder: folder not found: .*Rain_Heavy/train2018new"
    ):
        DIDMDNDataModule(str(didmdn_tree.root), inner_dir="train2018new", train_dir="DID-MDN-test").setup("fit")
    dm = DIDMDNDataModule(
        str(didmdn_tree.root), classes={"Rain_Light": 7}, test_dir=None, train_transform=NO_AUG, check_orientation=False
    )
    dm.setup("fit")
    assert len(dm.train_set) == 3 and {dm.train_set[i]["label"].item() for i in range(3)} == {7}
    assert dm.test_set is None and dm.val_set is None


def test_gt_pairs_side_by_side_is_an_error(didmdn_tree):
    with pytest.raises(ValueError, match=r"DID-MDN-test/1\.jpg: the test pairs are side-by-side images"):
        DIDMDNDataModule(str(didmdn_tree.root)).gt_pairs("test")
