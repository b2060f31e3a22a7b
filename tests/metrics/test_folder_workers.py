"""Folder scoring with decoding workers: the same report as in-process scoring, problems still collected, batches
of same-sized pairs on the device path."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from src.metrics.folder import _PairReader, _score_on_device, score_folders
from src.metrics.metric import ProtocolMetrics
from tests.metrics.protocol_reference import reference_scores


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """5 pairs, two sizes (so that device batches split), one grayscale prediction."""
    root = tmp_path_factory.mktemp("folders")
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    rng = np.random.default_rng(0)
    truth = {}
    for i, (h, w) in enumerate([(24, 30), (24, 30), (19, 41), (24, 30), (19, 41)]):
        gt = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pred = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
        if i == 3:
            pred = pred[:, :, 1]
        iio.imwrite(pred_dir / f"{i:02d}.png", pred)
        iio.imwrite(gt_dir / f"{i:02d}_gt.png", gt)
        truth[f"{i:02d}"] = (pred, gt)
    return pred_dir, gt_dir, truth


def test_workers_give_the_in_process_report(folders):
    pred_dir, gt_dir, truth = folders
    serial = score_folders(pred_dir, gt_dir, num_workers=0)
    parallel = score_folders(pred_dir, gt_dir, num_workers=2, batch_size=2, progress=True)
    assert parallel == serial
    assert list(parallel["per_image"]) == sorted(truth)  # the order of the pairs
    for name, (pred, gt) in truth.items():
        if pred.ndim == 2:
            pred = np.repeat(pred[:, :, None], 3, 2)
        want = reference_scores(pred / 255.0, gt / 255.0)
        for protocol, measures in want.items():
            for measure, value in measures.items():
                assert parallel["per_image"][name][protocol][measure] == pytest.approx(value, abs=1e-9)


def test_device_path_batches_same_sized_pairs(folders):
    """The GPU code path (decode in workers, score batches in the main process), run here on the CPU."""
    pred_dir, gt_dir, truth = folders
    pairs = [(name, pred_dir / f"{name}.png", gt_dir / f"{name}_gt.png") for name in sorted(truth)]
    reader = _PairReader(pairs, score=False)
    metrics = ProtocolMetrics()
    calls = []
    original = metrics.update
    metrics.update = lambda p, t, names: (calls.append(list(names)), original(p, t, names))  # type: ignore
    _score_on_device(metrics, [reader[i] for i in range(len(pairs))], torch.device("cpu"))
    assert calls == [["00", "01"], ["02"], ["03"], ["04"]]  # consecutive pairs of one size form a batch
    assert {**metrics.report(), "n_expected": 5, "n_left_out": 0} == score_folders(pred_dir, gt_dir)


def test_problems_from_workers_are_collected(tmp_path, folders):
    pred_dir, gt_dir, _ = folders
    bad_pred = tmp_path / "pred"
    bad_pred.mkdir()
    for f in pred_dir.iterdir():
        (bad_pred / f.name).write_bytes(f.read_bytes())
    (bad_pred / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    iio.imwrite(bad_pred / "02.png", np.zeros((8, 41, 3), np.uint8))
    with pytest.raises(ValueError) as info:
        score_folders(bad_pred, gt_dir, num_workers=2)
    message = str(info.value)
    assert "2 problem(s)" in message and "01.png: cannot read image" in message
    assert "size mismatch" in message and "02.png is 41x8" in message


@pytest.mark.gpu
def test_cuda_folder_scoring_equals_cpu(folders):
    pred_dir, gt_dir, _ = folders
    cpu = score_folders(pred_dir, gt_dir)
    gpu = score_folders(pred_dir, gt_dir, device="cuda", num_workers=2, batch_size=4)
    for name, scores in cpu["per_image"].items():
        for protocol, measures in scores.items():
            for measure, value in measures.items():
                assert gpu["per_image"][name][protocol][measure] == pytest.approx(value, abs=1e-10)
