"""Progressive schedules (schedule.progressive, src/data/progressive.py): the (step, batch, patch) sequence, the
samples every process draws, equality of a resumed run with an uninterrupted one, DDP over two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from src.data.base import sample_seed
from src.data.progressive import ProgressiveSampler, Stage, parse_stages, samples_before, stage_index
from src.data.realrain import RealRainDataModule
from src.data.synthetic import SyntheticRainDataModule
from src.data.transforms import mirror_pad, sub_crop
from src.utils.errors import ConfigValueError
from tests.conftest import ROOT, TINY_SYNTHETIC

STAGES = [
    {"until": 3, "patch": 8, "batch": 4},
    {"until": 5, "patch": 12, "batch": 2},
    {"until": 7, "patch": 16, "batch": 2},
]
pytestmark = pytest.mark.filterwarnings("ignore:.*pairs whose files are missing")


def stream(n: int, seed: int, length: int) -> list[tuple[int, int]]:
    """(epoch, index) of the sample stream, written out: the epochs' permutations randperm(n, seed + e) in a row."""
    out, epoch = [], 0
    while len(out) < length:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        out += [(epoch, i) for i in perm]
        epoch += 1
    return out[:length]


def test_step_batch_patch_sequence_of_a_tiny_schedule():
    stages = parse_stages(STAGES)
    assert [stage_index(stages, s) for s in range(9)] == [0, 0, 0, 1, 1, 2, 2, 2, 2]  # past the end: last stage
    assert [samples_before(stages, s) for s in range(9)] == [0, 4, 8, 12, 14, 16, 18, 20, 22]
    sampler = ProgressiveSampler(range(5), stages, num_replicas=1, rank=0, seed=3, length=8, with_seeds=True)
    steps = list(sampler)
    assert len(steps) == len(sampler) == 8
    assert [(len(k), k[0][2]) for k in steps] == [(4, 8)] * 3 + [(2, 12)] * 2 + [(2, 16)] * 3
    flat = [key for keys in steps for key in keys]
    want = stream(5, 3, len(flat))  # 24 samples: batches straddle the 5-sample epochs, nothing is dropped
    assert [(i, s) for i, s, _ in flat] == [(i, sample_seed(3, e, i)) for e, i in want]
    sampler.resume(5)
    assert list(sampler) == steps[5:] and list(sampler) == steps  # resume applies to the next iteration only


def test_processes_hold_disjoint_parts_of_each_global_batch():
    stages = parse_stages(STAGES)
    one = list(ProgressiveSampler(range(5), stages, num_replicas=1, rank=0, seed=3, length=7))
    ranks = [list(ProgressiveSampler(range(5), stages, num_replicas=2, rank=r, seed=3, length=7)) for r in (0, 1)]
    for step, keys in enumerate(one):
        r0, r1 = ranks[0][step], ranks[1][step]
        assert len(r0) == len(r1) == len(keys) // 2
        assert r0 == keys[0::2] and r1 == keys[1::2]  # every 2nd sample of the global batch, as DistributedSampler
    with pytest.raises(ConfigValueError, match=r"schedule.progressive\[0\].batch=4 .* does not divide by the 3 "):
        ProgressiveSampler(range(5), stages, num_replicas=3, rank=0, seed=3, length=7)


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "non-empty list"),
        ([{"until": 3, "patch": 8}], r"\[0\] must have exactly the keys until, patch, batch"),
        ([{"until": 3, "patch": 8, "batch": 0}], r"\[0\].batch must be a positive int"),
        ([{"until": 3, "patch": 8.5, "batch": 2}], r"\[0\].patch must be a positive int"),
        ([{"until": 3, "patch": 8, "batch": 2}, {"until": 3, "patch": 8, "batch": 2}], r"\[1\].until=3 must be larger"),
    ],
)
def test_bad_stages_are_refused_naming_the_key(bad, match):
    with pytest.raises(ConfigValueError, match=r"schedule.progressive" + (match if match[0] != "n" else ".*" + match)):
        parse_stages(bad)


def test_schedule_batch_and_patch_may_not_contradict_the_stages(spa_tree):
    """Refused when training (the stages set batch and patch, nothing is silently ignored); evaluating a
    progressive run's checkpoint with another batch is fine (src.eval overrides data.batch_size)."""
    dm = RealRainDataModule(str(spa_tree.root), progressive=STAGES, batch_size=8, val_scenes=0)
    dm.setup("fit")
    assert len(list(dm.test_dataloader())) == 3
    with pytest.raises(
        ConfigValueError,
        match=r"data.batch_size=8 \(schedule.batch_size\) differs from "
        r"schedule.progressive\[0\].batch=4",
    ):
        dm.train_dataloader()
    dm = SyntheticRainDataModule(progressive=STAGES, batch_size=4, train_patch=32)
    dm.setup("fit")
    with pytest.raises(ConfigValueError, match="data.train_patch=32 .* set together with schedule.progressive"):
        dm.train_dataloader()


def test_mirror_pad_and_sub_crop_follow_basicsr():
    row = np.arange(3, dtype=np.uint8).reshape(1, 3, 1)
    assert mirror_pad(row, 1, 7)[0, :, 0].tolist() == [0, 1, 2, 2, 1, 0, 0]  # cv2.BORDER_REFLECT: edge repeated
    col = np.arange(2, dtype=np.uint8).reshape(2, 1, 1)
    assert mirror_pad(col, 3, 1)[:, 0, 0].tolist() == [0, 1, 1]
    a = np.arange(10 * 10 * 3).reshape(10, 10, 3)
    g = torch.Generator().manual_seed(5)
    u = torch.rand(2, generator=torch.Generator().manual_seed(5)).tolist()
    top, left = int(6 * u[0]), int(6 * u[1])
    r, c = sub_crop(a, a + 1, 4, g)
    assert np.array_equal(r, a[top : top + 4, left : left + 4]) and np.array_equal(c, r + 1)


class Recorder(L.LightningModule):
    """Records each training batch's names, size and pixels per global step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, tuple] = {}

    def training_step(self, batch, batch_idx):
        self.seen[self.global_step] = (list(batch["name"]), tuple(batch["rain"].shape), batch["rain"].clone())
        return ((self.w - batch["rain"].mean()) ** 2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(make_dm, tmp_path, max_steps, ckpt=None, save_at=None):
    callbacks = (
        [ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=save_at, save_top_k=-1, monitor=None)]
        if save_at
        else []
    )
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=bool(save_at),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    model = Recorder()
    trainer.fit(model, datamodule=make_dm(), ckpt_path=ckpt, weights_only=False)
    return model.seen


@pytest.mark.parametrize("where", [4, 3])  # mid-stage (stage 1 runs steps 3-4), and at the stage boundary
def test_resume_continues_the_same_samples_and_patches(spa_tree, tmp_path, where):
    """File data (SPA-Data layout, 24x32 images): crops of the largest patch (28: the images are mirrored to
    28x32 first) cut to each stage's patch; a run checkpointed at step ``where`` and resumed draws exactly the
    batches, pixels included, of the uninterrupted run."""
    stages = [dict(s) for s in STAGES]
    stages[-1]["patch"] = 28  # larger than the images' 24 rows: mirrored to 28x32 first

    def make_dm():
        return RealRainDataModule(
            str(spa_tree.root),
            progressive=stages,
            batch_size=4,
            val_scenes=0,
            seed=7,
            check_orientation=False,
            train_transform={"crop": 16, "hflip": True},
        )

    full = _fit(make_dm, tmp_path / "full", 7)
    assert [full[s][1] for s in range(7)] == [(4, 3, 8, 8)] * 3 + [(2, 3, 12, 12)] * 2 + [(2, 3, 28, 28)] * 2
    _fit(make_dm, tmp_path / "first", 7, save_at=where)  # the checkpoint written after step `where`
    ckpt = tmp_path / "first" / f"step={where}.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == where
    resumed = _fit(make_dm, tmp_path / "resumed", 7, ckpt=str(ckpt))
    assert sorted(resumed) == list(range(where, 7))
    for step, (names, shape, pixels) in resumed.items():
        assert (names, shape) == full[step][:2] and torch.equal(pixels, full[step][2]), step


def test_synthetic_data_follows_the_stages(tmp_path):
    def make_dm():
        return SyntheticRainDataModule(
            train_photos=["camera", "coins"],
            val_photos=["coffee"],
            test_photos=["chelsea"],
            train_length=5,
            patch_size=64,
            batch_size=4,
            progressive=STAGES,
            seed=3,
        )

    seen = _fit(make_dm, tmp_path, 8)
    keys = [k for keys in ProgressiveSampler(range(5), parse_stages(STAGES), 1, 0, 3, 8) for k in keys]
    assert [n for s in range(8) for n in seen[s][0]] == [f"3_{i}" for i, _, _ in keys]
    assert [seen[s][1][2] for s in range(8)] == [8, 8, 8, 12, 12, 16, 16, 16]  # the last stage goes on past 7


@pytest.mark.slow
def test_two_ddp_processes_split_every_global_batch(tmp_path):
    """src.train with 2 CPU processes (gloo): at every step the ranks hold disjoint halves of the global batch
    that one process would draw, at the stage's patch size."""
    run = tmp_path / "run"
    stages = "[{until:3,patch:16,batch:4},{until:5,patch:24,batch:2}]"
    cmd = [
        sys.executable,
        "-m",
        "src.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "model=b_a",
        *TINY_SYNTHETIC,
        "schedule.batch_size=4",
        f"schedule.progressive={stages}",
        "schedule.max_steps=5",
        "schedule.val_every=5",
        "test=false",
        "logger=[]",
        "seed=3",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "~callbacks.image_grid",
        "+callbacks.record._target_=tests.data.progressive_helpers.RecordBatches",
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((run / f"batches_rank{r}.json").read_text()) for r in (0, 1)]
    one = list(ProgressiveSampler(range(16), [Stage(3, 16, 4), Stage(5, 24, 2)], 1, 0, 3, 5))
    assert [s for s, _, _ in ranks[0]] == [s for s, _, _ in ranks[1]] == list(range(5))
    for step, keys in enumerate(one):
        names = [f"3_{i}" for i, _, _ in keys]  # data=synthetic names its training samples <seed>_<index>
        (_, n0, shape0), (_, n1, shape1) = ranks[0][step], ranks[1][step]
        assert n0 == names[0::2] and n1 == names[1::2], step
        assert shape0 == shape1 == [len(keys) // 2, 3, keys[0][2], keys[0][2]]
