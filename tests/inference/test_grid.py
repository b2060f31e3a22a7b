"""Several checkpoints in one run: each built as its own model, columns in job order, labelled by what differs."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from src.inference.models import checkpoint_files, grid_labels
from tests.inference.conftest import RELEASE, make_checkpoint, needs_release, run_predict


@needs_release
def test_the_release_in_a_grid_is_built_as_model_spanet_release(tmp_path, images):
    ours = make_checkpoint(tmp_path / "ours.ckpt")
    out, ref = tmp_path / "grid", tmp_path / "ref"
    run_predict(tmp_path, [f"ckpt_path=[{ours},{RELEASE}]", f"input={images}", f"output={out}", "save_raw=true"])
    run_predict(tmp_path, ["model=spanet_release", f"input={images}", f"output={ref}", "save_raw=true"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["spanet", "spanet_release"]
    for stem in "abc":
        np.testing.assert_allclose(
            np.load(out / "spanet_release" / f"{stem}.npy"), np.load(ref / f"{stem}.npy"), atol=1e-5
        )
        assert (
            np.abs(
                iio.imread(out / "spanet_release" / f"{stem}.png").astype(int) - iio.imread(ref / f"{stem}.png")
            ).max()
            <= 1
        )


def test_a_sweep_gives_columns_in_job_order_labelled_by_what_differs(tmp_path):
    sweep = tmp_path / "multiruns" / "2025-01-01_00-00-00"
    names = []
    for job in range(12):
        model, seed = ("b_a", "b_b")[job % 2], job // 2 + 1
        run = sweep / str(job)
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(
            f"- experiment=table4_smoke\n- model={model}\n- seed={seed}\n- hydra.sweep.dir={sweep}\n"
        )
        names.append(model)
    files = checkpoint_files(str(sweep))
    assert files == [sweep / str(job) / "checkpoints" / "best.ckpt" for job in range(12)]  # 0, 1, 2, ..., 10, 11
    assert grid_labels(names, files) == [f"{('b_a', 'b_b')[j % 2]} seed={j // 2 + 1}" for j in range(12)]
    assert grid_labels(["b_a", "b_a"], [files[0], tmp_path / "x.pt"]) == ["b_a (0)", "b_a (x)"]  # no run to compare
