"""The notebooks execute end to end (nbclient) on tiny data: their first cell (tagged ``parameters``) is replaced
by tiny values, outputs go to tmp_path. The notebooks in the repository are stored without outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import imageio.v3 as iio
import nbformat
import pytest
from nbclient import NotebookClient
from skimage.metrics import peak_signal_noise_ratio

from tests.conftest import ROOT, TINY, TINY_SYNTHETIC
from tests.inference.conftest import RELEASE

NOTEBOOKS = ROOT / "notebooks"
TINY_TRAIN = TINY_SYNTHETIC + [o for o in TINY if not o.startswith("schedule.max_steps")]


def execute(name: str, parameters: str, timeout: int = 240) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = parameters
    env = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel and the commands it starts inherit these
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return nb


def text_of(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("name", ["quickstart", "results", "make_dataset"])
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.slow
@pytest.mark.skipif(not RELEASE.is_file(), reason="weights/spanet_release.pt not present")
def test_quickstart_trains_derains_and_shows_attention(tmp_path):
    out = tmp_path / "qs"
    nb = execute("quickstart", f"STEPS = 4\nTRAIN_OVERRIDES = {TINY_TRAIN!r}\nPHOTO = 'motorcycle'\nCROP = 48\n"
                               f"OUT = {str(out)!r}")
    assert (out / "train" / "metrics.json").is_file()
    for model in ("ours", "release"):
        assert (out / model / "compare" / "motorcycle.png").is_file()
        assert (out / model / "attention" / "motorcycle.png").is_file()
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= 4  # two compare figures, two rows of attention maps
    text = text_of(nb)
    assert "after 4 steps" in text
    # the PSNR of the rain, of the fine-tuned model and of the release on the photo: those of the files, as
    # scikit-image computes them
    printed = re.search(r"PSNR \(protocol spanet\) on the unseen motorcycle: rain ([\d.]+) dB, ours ([\d.]+) dB, "
                        r"release ([\d.]+) dB", text)
    gt = iio.imread(out / "photo_gt" / "motorcycle.png")
    for value, folder in zip(printed.groups(), ("photo", "ours", "release")):
        expected = peak_signal_noise_ratio(gt, iio.imread(out / folder / "motorcycle.png"), data_range=255)
        assert float(value) == pytest.approx(expected, abs=0.006)


@pytest.mark.slow
def test_results_notebook_on_a_tiny_run_and_sweep(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONPATH=str(ROOT))
    sweep = tmp_path / "sweep"
    tiny = [*TINY_SYNTHETIC, *TINY, "model.net.channels=8"]
    subprocess.run([sys.executable, "-m", "src.train", "-m"] + tiny + ["model=spanet,b_a", f"hydra.sweep.dir={sweep}"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    run = sweep / "0"  # a sweep's job is a run like any other
    nb = execute("results", f"RUN_DIR = {str(run)!r}\nSWEEP_DIR = {str(sweep)!r}\nOUT = {str(tmp_path / 'nb')!r}")
    text = text_of(nb)
    assert "chelsea" in text  # the per-image table names the test photo
    assert "b_a" in text and "spanet" in text  # make_table's rows for the sweep's two models


@pytest.mark.slow
def test_make_dataset_notebook_assembles_pairs(tmp_path):
    out = tmp_path / "md"
    execute("make_dataset", f"FRAMES = 24\nSIZE = (48, 64)\nDENSITY = 'sparse'\nPATCH = 32\nOUT = {str(out)!r}")
    pairs = (out / "dataset" / "real_world.txt").read_text().splitlines()
    # 2 accepted clips x 20 frames (sparse) x 2 patches (48x64 cut into 32x32, remainder dropped)
    assert len(pairs) == 2 * 20 * 2
    assert (out / "garden_clean.png").is_file()
