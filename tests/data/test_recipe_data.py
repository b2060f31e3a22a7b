"""Config groups that stand on their own, and a recipe's batch / patch / flips reaching the data module.

Data configs read nothing from ``schedule``: ``src.train`` binds ``data.batch_size`` / ``train_patch`` /
``train_flips`` to the schedule's, so src.eval and src.data.check compose a data config alone (src.predict takes none).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.data.synthetic import SyntheticRainDataset
from tests.conftest import CONF, compose_cfg
from tests.data.conftest import write

DATA_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
ALL_ON = {"hflip": True, "vflip": True, "transpose": True}
ALL_OFF = {"hflip": False, "vflip": False, "transpose": False}
# per recipe, written out from the authors' recipes (conf/schedule comments, docs/): data (batch_size, train_patch,
# train_flips), model optimiser lr, trainer (max_steps, val_check_interval). None = no recipe (schedule=quick).
RECIPES = {
    None: ((8, None, None), 3.0e-3, (450, 100)),
    "spanet": ((32, None, None), 5.0e-3, (60000, 2000)),
    "ddn": ((20, 64, None), 0.1, (210000, 5000)),
    "didmdn": ((1, None, None), 2.0e-4, (40000, 2000)),
    "jorder": ((8, 64, ALL_ON), 1.0e-4, (180000, 5000)),
    "rescan": ((64, 64, ALL_OFF), 5.0e-3, (20000, 1000)),
}


def _data_overrides(data: str, root: str = "/nonexistent") -> list[str]:
    extra = {"synthetic": [], "paired": [f"data.root={root}", "data.layout=rain100"]}
    return [f"data={data}"] + extra.get(data, [f"data.root={root}"])


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


def _composer():
    GlobalHydra.instance().clear()
    return initialize_config_dir(config_dir=str(CONF), version_base="1.3")


def test_every_recipe_x_data_config_keeps_the_recipe_values():
    with _composer():
        for (recipe, (data_values, lr, trainer_values)), data in itertools.product(RECIPES.items(), DATA_CONFIGS):
            cfg = compose("train", ([f"recipe={recipe}"] if recipe else []) + _data_overrides(data))
            got = OmegaConf.to_container(cfg.data, resolve=True)
            assert (got["batch_size"], got["train_patch"], got["train_flips"]) == data_values, (recipe, data)
            assert cfg.model.optimizer.lr == lr and cfg.model.scheduler_interval == "step", (recipe, data)
            assert (cfg.trainer.max_steps, cfg.trainer.val_check_interval) == trainer_values, (recipe, data)
        # the command line still overrides either side; experiments (after the binding) still win
        cfg = compose("train", ["recipe=jorder", "schedule.batch_size=4", "data.train_patch=32"])
        assert (cfg.data.batch_size, cfg.data.train_patch) == (4, 32)
        cfg = compose("train", ["recipe=jorder", "experiment=table4_smoke", "debug=limit"])
        assert cfg.data.batch_size == cfg.schedule.batch_size == 4 and cfg.data.train_patch == 32
        assert cfg.trainer.max_steps == 6 and cfg.trainer.val_check_interval == 3


@pytest.mark.parametrize("entry", ["eval", "check"])
def test_entry_points_compose_any_data_config_without_a_schedule(entry):
    with _composer():
        for data in DATA_CONFIGS:
            cfg = compose(entry, _data_overrides(data))
            assert "schedule" not in cfg, entry
            resolved = OmegaConf.to_container(cfg.data, resolve=True)  # nothing points at a missing schedule
            assert resolved["batch_size"] == 1 and resolved["train_patch"] is None and resolved["train_flips"] is None
    if entry == "eval":  # its trainer and model stand alone too
        assert cfg.trainer.max_steps == -1 and cfg.trainer.val_check_interval is None
        assert "optimizer" not in cfg.model


def _flip_tree(root, n: int = 16, side: int = 32):
    """n pairs of side x side noise images (every flip / transpose of each is a different image)."""
    rng = np.random.default_rng(7)
    images = {}
    for i in range(n):
        clean = rng.integers(20, 200, size=(side, side, 3), dtype=np.uint8)
        rain = np.clip(clean.astype(np.int16) + 40, 0, 255).astype(np.uint8)
        write(root / "rain" / f"{i}.png", rain)
        write(root / "clean" / f"{i}.png", clean)
        images[str(i)] = (rain, clean)
    return images


def _which_flips(sample: torch.Tensor, original: np.ndarray) -> tuple[bool, bool, bool]:
    """The (hflip, vflip, transpose) that turn ``original`` (H x W x 3 uint8) into ``sample`` (3 x H x W in
    [0, 1]), found by trying all 8 with torch's own flip / transpose (EDSR's augment applies them in this order)."""
    base = torch.from_numpy(original).permute(2, 0, 1).float() / 255
    found = []
    for h, v, t in itertools.product((False, True), repeat=3):
        x = base
        x = torch.flip(x, dims=[2]) if h else x
        x = torch.flip(x, dims=[1]) if v else x
        x = x.transpose(1, 2) if t else x
        if torch.equal(x, sample):
            found.append((h, v, t))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    "recipe,expected",
    [("jorder", ALL_ON), ("rescan", ALL_OFF), ("spanet", {"hflip": True, "vflip": False, "transpose": False})],
)
def test_recipe_flips_reach_the_training_batches(recipe, expected, tmp_path):
    """800 training samples from real batches: under recipe=jorder each of hflip / vflip / transpose is applied
    with probability 1/2, independently (all 8 combinations ~1/8); rain and clean always get the same one.
    recipe=rescan (no augmentation) leaves every sample as read; recipe=spanet keeps data=paired's own hflip."""
    images = _flip_tree(tmp_path / "pairs")
    cfg = compose_cfg(
        "train",
        [
            f"recipe={recipe}",
            "data=paired",
            f"data.root={tmp_path / 'pairs'}",
            "data.layout=same_names",
            "data.rain_dir=rain",
            "data.clean_dir=clean",
            "data.num_workers=0",
            "data.train_transform.crop=32",
            "schedule.batch_size=8",
        ]
        + (["schedule.train_patch=32"] if recipe != "spanet" else []),
        tmp_path / "run",
    )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    torch.manual_seed(0)
    combos = []
    loader = dm.train_dataloader()
    epoch = 0
    while len(combos) < 800:
        loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch start: augmentation is seeded per epoch
        epoch += 1
        for batch in loader:
            for rain, clean, name in zip(batch["rain"], batch["clean"], batch["name"]):
                flips = _which_flips(rain, images[name][0])
                assert _which_flips(clean, images[name][1]) == flips
                combos.append(flips)
    n = len(combos)
    rates = {k: sum(c[i] for c in combos) / n for i, k in enumerate(("hflip", "vflip", "transpose"))}
    for key, on in expected.items():
        if on:  # binomial(n, 1/2): sd = 0.5 / sqrt(n) ~ 0.018; 4 sd
            assert abs(rates[key] - 0.5) < 4 * 0.5 / n**0.5, (key, rates)
        else:
            assert rates[key] == 0, (key, rates)
    if expected == ALL_ON:  # the three are independent: chi-square over the 8 combinations, 7 dof, p = 0.001
        counts = np.array([combos.count(c) for c in itertools.product((False, True), repeat=3)])
        chi2 = float(((counts - n / 8) ** 2 / (n / 8)).sum())
        assert chi2 < 24.32, (counts, chi2)


def test_synthetic_patches_follow_the_recipe_flips():
    """data=synthetic: by default a random hflip; with train_flips each flip independently (same random stream,
    so sample i is the default's patch or its flips)."""
    kw = dict(photos=["camera", "coins"], seed=3, length=200, patch_size=16)
    default = SyntheticRainDataset(**kw)
    off = SyntheticRainDataset(**kw, flips=ALL_OFF)
    hflip_only = SyntheticRainDataset(**kw, flips={"hflip": True})
    flipped = 0
    for i in range(len(default)):
        a, b = off[i]["clean"], default[i]["clean"]
        assert torch.equal(hflip_only[i]["clean"], b) and torch.equal(hflip_only[i]["rain"], default[i]["rain"])
        if torch.equal(b, a.flip(-1)) and not torch.equal(a, b):
            flipped += 1
        else:
            assert torch.equal(a, b), i
    assert abs(flipped / len(default) - 0.5) < 4 * 0.5 / len(default) ** 0.5
    every = SyntheticRainDataset(**kw, flips=ALL_ON)
    transposed = sum(
        not torch.equal(every[i]["clean"], off[i]["clean"])
        and not torch.equal(every[i]["clean"], off[i]["clean"].flip(-1))
        for i in range(60)
    )
    assert transposed > 20  # vflip / transpose change most patches (3 of 4 combinations that are not hflip-only)
    with pytest.raises(ValueError, match="schedule.train_flips: unknown key"):
        SyntheticRainDataset(**kw, flips={"rotate": True})
