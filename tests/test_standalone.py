"""A clone stands on its own: the repository's files copied into an empty folder run the newcomer's commands.

Nothing beside the copy (no weights, data or docs outside it); every command runs from the copy with the copy on
PYTHONPATH: src.info, src.predict with the released weights on a photo, a few fine-tuning steps from the release
with model.init_from, and the release's output check (tests/models/test_spanet_release.py, none skipped)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage import data as skdata

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def repo_files() -> list[str]:
    """The files a clone has: tracked ones plus new ones git does not ignore (present in the working tree)."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: the list of the repository's files comes from git")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("alone") / "spanet-suite"
    for name in repo_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["spanet-suite"]  # nothing beside it
    return dest


def run(clone: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT_ROOT", "PYTHONPATH")}
    env.update(PYTHONPATH=str(clone), WANDB_MODE="offline", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_no_file_points_outside_the_repository():
    pattern = re.compile(r"\.\./shared|shared[/](spec|weights)|/work[/](main|wt|shared)")  # [/]: no literal path here
    hits = []
    for name in repo_files():
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (weights, images)
        hits += [f"{name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_info(clone):
    out = run(clone, "-m", "src.info").stdout
    assert re.search(r"spanet_release\s+\[276,704 parameters\]", out)
    assert re.search(r"realrain\s+\[needs data.root=DIR\]", out) and "table4" in out


def test_predict_with_the_release_on_a_photo(clone):
    photo = clone / "rainy.png"
    iio.imwrite(photo, skdata.astronaut()[:48, :40])
    proc = run(
        clone,
        "-m",
        "src.predict",
        "model=spanet_release",
        f"input={photo.name}",
        "output=outputs/derained",
        "device=cpu",
    )
    assert "sha256 verified" in proc.stdout + proc.stderr
    got = iio.imread(clone / "outputs" / "derained" / "rainy.png")
    # the same network, built here from this checkout's copy of the file
    from src.models.spanet import SPANet
    from src.utils.checkpoint import load_net_weights

    net = load_net_weights(SPANet("b_d"), ROOT / "weights" / "spanet_release.pt").eval()
    x = torch.from_numpy(iio.imread(photo).astype(np.float32).transpose(2, 0, 1) / 255)[None]
    with torch.no_grad():
        ref = (net(x)["out"][0].clamp(0, 1).numpy().transpose(1, 2, 0) * 255).round()
    assert got.shape == (48, 40, 3) and np.abs(got.astype(float) - ref).max() <= 1


def test_fine_tune_a_few_steps_from_the_release(clone):
    proc = run(
        clone,
        "-m",
        "src.train",
        "model=b_d",
        "model.init_from=weights/spanet_release.pt",
        "data.train_length=8",
        "data.patch_size=32",
        "data.eval_long_side=40",
        "data.test_photos=[chelsea]",
        "schedule.batch_size=2",
        "schedule.max_steps=2",
        "schedule.val_every=2",
        "test=false",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "hydra.run.dir=outputs/finetune",
    )
    assert "loaded 61 of the network's 61 tensors" in proc.stdout + proc.stderr
    metrics = json.loads((clone / "outputs" / "finetune" / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["model"] == "b_d"


def test_the_release_output_check_runs_and_skips_nothing(clone):
    proc = run(clone, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/models/test_spanet_release.py")
    assert re.search(r"\b7 passed\b", proc.stdout) and "skipped" not in proc.stdout, proc.stdout[-1000:]
