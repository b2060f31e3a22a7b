"""data=realrain on a SPA-Data look-alike tree: counts, held-out scenes, test set, sampler, config."""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from src.data.base import sample_seed
from src.data.realrain import RealRainDataModule, internet_images
from src.utils.config import require_set

CONF = os.path.join(os.path.dirname(__file__), "..", "..", "conf")
SMALL = {"crop": 16}
pytestmark = pytest.mark.filterwarnings("ignore:.*pairs whose files are missing")


def make(root, **kw):
    kw.setdefault("train_transform", SMALL)
    return RealRainDataModule(str(root), **kw)


def test_splits_counts_one_warning_and_no_scene_leak(spa_tree):
    dm = make(spa_tree.root, val_scenes=1, batch_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
    skip_warnings = [w for w in caught if "skipped" in str(w.message)]
    assert len(skip_warnings) == 1 and "skipped 3 pairs whose files are missing" in str(skip_warnings[0].message)
    assert len(dm.train_set) == 12 and len(dm.val_set) == 4 and len(dm.test_set) == 3
    train_scenes = {dm.train_set.pair(i).rain.split(os.sep)[-3] for i in range(len(dm.train_set))}
    val_scenes = {dm.val_set.pair(i).rain.split(os.sep)[-3] for i in range(len(dm.val_set))}
    assert train_scenes == {"000", "001", "002"} and val_scenes == {"010"}
    batch = next(iter(dm.train_dataloader()))
    assert batch["rain"].shape == (4, 3, 16, 16) and batch["label"].tolist() == [-1] * 4


def test_test_set_full_non_square_images(spa_tree):
    dm = make(spa_tree.root)
    dm.setup("test")  # test stage: the training list is not read
    assert dm.train_set is None
    shapes = [tuple(dm.test_set[i]["rain"].shape) for i in range(3)]
    assert shapes == [(3, 24, 32), (3, 32, 24), (3, 24, 32)]
    s = dm.test_set[1]
    assert s["name"] == "001" and s["clean"].shape == s["rain"].shape
    gt = spa_tree.images[str(spa_tree.root / "real_test_1000/gt/001gt.png")]
    torch.testing.assert_close(s["clean"], torch.from_numpy(gt).permute(2, 0, 1).float() / 255)


def test_test_list_file_and_val_fallback(spa_tree):
    lines = [f"/real_test_1000/rain/{i:03d}.png /real_test_1000/gt/{i:03d}gt.png" for i in range(3)]
    (spa_tree.root / "real_test_1000.txt").write_text("\n".join(lines) + "\n")
    dm = make(spa_tree.root, val_scenes=0, test_list="real_test_1000.txt", val_max=2)
    dm.setup("fit")
    assert len(dm.train_set) == 16 and len(dm.test_set) == 3
    assert [dm.val_set.pair(i).name for i in range(2)] == ["000", "001"]  # test set, capped by val_max


def test_release_resized_crop_default_and_internet(spa_tree):
    dm = RealRainDataModule(
        str(spa_tree.root),
        batch_size=2,
        train_transform={"resized_crop": {"size": 256, "scale": [0.8, 1.0], "ratio": [0.75, 4 / 3]}},
    )
    dm.setup("fit")
    assert dm.train_set[0]["rain"].shape == (3, 256, 256)
    assert [os.path.basename(p) for p in dm.internet_images()] == ["2.png", "10.jpg"]
    assert internet_images(str(spa_tree.root)) == dm.internet_images()


def test_seeded_sampler_single_process_and_ddp_shards(spa_tree):
    def order(seed, epoch, world=1, rank=0):
        dm = make(spa_tree.root, seed=seed, batch_size=2 * world, val_scenes=0, check_orientation=False)
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # Lightning calls this at every epoch start
        keys = list(loader.sampler)  # (index, augmentation seed) for file data sets
        assert all(s == sample_seed(seed, epoch, i) for i, s in keys)
        return [i for i, _ in keys]

    a, b = order(5, 0), order(5, 0)
    assert a == b and sorted(a) == list(range(16))  # same seed -> same order (a resumed run repeats it)
    assert order(5, 1) != a and order(6, 0) != a
    expected = torch.randperm(16, generator=torch.Generator().manual_seed(5 + 1)).tolist()
    assert order(5, 1) == expected  # epoch e: randperm(N, seed + e)
    r0, r1 = order(5, 1, world=2, rank=0), order(5, 1, world=2, rank=1)
    assert len(r0) == len(r1) == 8 and set(r0).isdisjoint(r1) and sorted(r0 + r1) == list(range(16))
    assert r0 == expected[0::2] and r1 == expected[1::2]


def test_errors_name_the_path(tmp_path, spa_tree):
    with pytest.raises(FileNotFoundError, match="data.root: folder not found: .*nowhere"):
        make(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="list file not found: .*other.txt"):
        make(spa_tree.root, list_file="other.txt").setup("fit")
    (spa_tree.root / "empty.txt").write_text("/real_world/274/274-1/274-1_0_0.png /real_world_gt/274/274_0_0.png\n")
    with pytest.raises(FileNotFoundError, match=r"train \(.*empty.txt\): no image pairs found"):
        make(spa_tree.root, list_file="empty.txt", val_scenes=0).setup("fit")
    bad = spa_tree.root / "real_world/000/000-1/000-1_0_0.png"
    bad.write_bytes(bad.read_bytes()[:60])
    dm = make(spa_tree.root, check_orientation=False)
    dm.setup("fit")
    with pytest.raises(OSError, match=r"000-1_0_0\.png: cannot read image"):
        dm.train_set[0]


def test_real_config_composes_and_requires_root(spa_tree):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=os.path.abspath(CONF), version_base="1.3"):
            cfg = compose(config_name="check", overrides=["data=realrain"])
            with pytest.raises(ValueError, match="data.root is not set: pass data.root=DIR"):
                require_set(cfg, "data")
            cfg = compose(
                config_name="check",
                overrides=[
                    "data=realrain",
                    f"data.root={spa_tree.root}",
                    "data.val_scenes=[000]",
                    "data.train_transform.resized_crop.size=32",
                ],
            )
    finally:
        GlobalHydra.instance().clear()
    require_set(cfg, "data")
    dm = instantiate(cfg.data)
    assert isinstance(dm, RealRainDataModule) and dm.batch_size == 1
    dm.setup("fit")
    assert len(dm.train_set) == 12 and len(dm.val_set) == 4
    assert dm.train_set[0]["clean"].shape == (3, 32, 32)


class _Recorder(L.LightningModule):
    """Records the names of every training batch, per epoch."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).extend(batch["name"])
        return ((self.w - batch["rain"].mean()) ** 2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_keeps_sampler_and_resume_continues_order(spa_tree, tmp_path):
    """Lightning calls set_epoch on our sampler (it does not replace it), and a run resumed from an
    end-of-epoch checkpoint sees exactly the batches of the uninterrupted run."""

    def fit(max_epochs, ckpt=None):
        dm = make(spa_tree.root, seed=3, batch_size=4, val_scenes=0, check_orientation=False)
        model = _Recorder()
        trainer = L.Trainer(
            max_epochs=max_epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            default_root_dir=str(tmp_path),
        )
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
        return trainer, model, dm

    trainer, full, dm = fit(3)
    names = [dm.train_set.pair(i).name for i in range(len(dm.train_set))]
    for epoch in range(3):
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(3 + epoch)).tolist()
        assert full.seen[epoch] == [names[i] for i in perm]
    trainer, _, _ = fit(2)
    trainer.save_checkpoint(tmp_path / "e2.ckpt")
    _, resumed, _ = fit(3, str(tmp_path / "e2.ckpt"))
    assert list(resumed.seen) == [2] and resumed.seen[2] == full.seen[2]


def test_gt_pairs_for_folder_scoring(spa_tree):
    dm = make(spa_tree.root)
    assert dm.gt_pairs("test") == [
        (f"{i:03d}", str(spa_tree.root / f"real_test_1000/gt/{i:03d}gt.png")) for i in range(3)
    ]
    assert dm.train_set is None  # only the test split was read
    val = make(spa_tree.root, val_scenes=["001"]).gt_pairs("val")
    assert [n for n, _ in val] == ["001-1_0_0", "001-2_0_0", "001-1_0_1", "001-2_0_1"]
    assert all(gt.endswith(f"real_world_gt/001/001_0_{n[-1]}.png") for n, gt in val)


def test_recipe_patch_size_replaces_the_data_crop(spa_tree, tmp_path):
    """recipe=ddn/jorder/rescan carry their authors' 64x64 crops (schedule.train_patch) into any data config;
    SPANet's recipe keeps the data config's own augmentation (the release's random-resized crop)."""
    from tests.conftest import compose_cfg

    root = f"data.root={spa_tree.root}"
    try:
        for recipe, patch in [("ddn", 64), ("jorder", 64), ("rescan", 64), ("didmdn", None), ("spanet", None)]:
            for data in ("realrain", "synthetic"):
                overrides = [f"recipe={recipe}", f"data={data}"] + ([root] if data != "synthetic" else [])
                cfg = compose_cfg("train", overrides, tmp_path)
                assert cfg.data.train_patch == patch, (recipe, data)
        cfg = compose_cfg("train", ["recipe=ddn", "data=realrain", root, "schedule.train_patch=16"], tmp_path)
        dm = instantiate(cfg.data)
        dm.setup("fit")
        assert dm.train_set[0]["rain"].shape == (3, 16, 16)  # SPA tree images are 24x32: plain crop, no resize
        assert "RandomResizedCrop" not in repr(dm.train_transform) and "RandomCrop" in repr(dm.train_transform)
        cfg = compose_cfg("train", ["recipe=rescan", "data=synthetic", "schedule.train_patch=40"], tmp_path)
        dm = instantiate(cfg.data)
        dm.setup("fit")
        assert dm.train_set[0]["rain"].shape == (3, 40, 40)
        for bad in (0, 2.5, "64"):
            with pytest.raises(ValueError, match=r"schedule.train_patch must be a positive int"):
                make(spa_tree.root, train_patch=bad)
    finally:
        GlobalHydra.instance().clear()
