"""ProtocolMetrics: per-image scores averaged over images, several update() calls, report schema, DDP gather."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from src.metrics.metric import ProtocolMetrics, flat_means
from src.metrics.protocols import PROTOCOLS
from tests.metrics.protocol_reference import image_pairs, reference_scores, to_tensor

KEYS = {f"{m}_{p}" for p in PROTOCOLS for m in ("psnr", "ssim")}


@pytest.fixture(scope="module")
def scored():
    """Three named images (the two reference pairs and a lightly noisy one) with their reference scores."""
    (p0, g0), (p1, g1) = image_pairs()
    p2 = g0 + np.random.default_rng(5).normal(0, 0.01, g0.shape)
    pairs = {"astro": (p0, g0), "coffee": (p1, g1), "astro_light": (p2, g0)}
    return pairs, {name: reference_scores(p, g) for name, (p, g) in pairs.items()}


def test_mean_over_images_not_pooled_mse():
    """Two images with different MSE: the metric is the mean of the PSNRs, not the PSNR of the pooled MSE."""
    gt = torch.full((2, 3, 16, 16), 0.5, dtype=torch.float64)
    pred = gt.clone()
    pred[0] += 0.1  # MSE 0.01   -> 20 dB
    pred[1] += 0.01  # MSE 0.0001 -> 40 dB
    metric = ProtocolMetrics()
    metric.update(pred, gt, ["a", "b"])
    assert metric.compute()["psnr_spanet"].item() == pytest.approx(30.0, abs=1e-9)
    pooled = 10 * math.log10(1 / ((0.01 + 0.0001) / 2))  # 22.97 dB
    assert abs(30.0 - pooled) > 7


def test_several_updates_and_report(scored):
    pairs, expected = scored
    metric = ProtocolMetrics()
    (pa, ga), (pc, gc), (pl, gl) = pairs["astro"], pairs["coffee"], pairs["astro_light"]
    metric.update(to_tensor(pa, pl).float(), to_tensor(ga, gl).float(), ["astro", "astro_light"])
    metric.update(to_tensor(pc).float(), to_tensor(gc).float(), ["coffee"])

    means = metric.compute()
    assert set(means) == KEYS
    for protocol in PROTOCOLS:
        for measure in ("psnr", "ssim"):
            want = np.mean([expected[n][protocol][measure] for n in expected])
            assert means[f"{measure}_{protocol}"].item() == pytest.approx(want, abs=1e-4)

    report = metric.report()
    json.dumps(report)  # plain JSON types only
    assert report["n_images"] == 3
    assert list(report["per_image"]) == ["astro", "astro_light", "coffee"]
    for name in expected:
        for protocol in PROTOCOLS:
            assert set(report["per_image"][name][protocol]) == {"psnr", "ssim"}
            for measure in ("psnr", "ssim"):
                got = report["per_image"][name][protocol][measure]
                assert got == pytest.approx(expected[name][protocol][measure], abs=1e-4)
    assert flat_means(report) == pytest.approx({k: v.item() for k, v in means.items()}, abs=1e-12)

    metric.reset()
    with pytest.raises(RuntimeError, match="no images"):
        metric.report()


def test_unnamed_images_and_bad_names():
    x = torch.rand(2, 3, 12, 12)
    metric = ProtocolMetrics()
    metric.update(x, x.flip(-1))
    metric.update(x, x.flip(-2), None)
    assert list(metric.report()["per_image"]) == ["#0", "#1", "#2", "#3"]
    with pytest.raises(ValueError, match="list of 2 strings"):
        metric.update(x, x, ["only_one"])
    with pytest.raises(ValueError, match="bytes long"):
        metric.update(x, x, ["a", "n" * 300])


def test_distributed_gather_keeps_names_and_drops_sampler_padding(scored):
    """Simulated 2-process run: rank 1's states arrive through dist_sync_fn; the DistributedSampler's padded
    repeat of an image (same name) is counted once."""
    pairs, expected = scored
    (pa, ga), (pc, gc), (pl, gl) = pairs["astro"], pairs["coffee"], pairs["astro_light"]

    rank1 = ProtocolMetrics()
    rank1.update(to_tensor(pc), to_tensor(gc), ["coffee"])
    rank1.update(to_tensor(pa), to_tensor(ga), ["astro"])  # padding: a repeat of rank 0's first image
    other = iter([])

    def fake_all_gather(tensor, group=None):
        return [tensor, next(other)]

    rank0 = ProtocolMetrics(dist_sync_fn=fake_all_gather, distributed_available_fn=lambda: True)
    rank0.update(to_tensor(pa, pl), to_tensor(ga, gl), ["astro", "astro_light"])

    def rank1_states():  # in the order torchmetrics syncs them (the order of add_state)
        return iter([torch.cat(getattr(rank1, attr)) for attr in rank0._reductions])

    other = rank1_states()
    report = rank0.report()
    assert report["n_images"] == 3
    assert sorted(report["per_image"]) == ["astro", "astro_light", "coffee"]
    want = np.mean([expected[n]["spanet"]["psnr"] for n in expected])
    assert report["mean"]["spanet"]["psnr"] == pytest.approx(want, abs=1e-9)
    # compute() gathers the same way; rank 0's own states are restored afterwards
    other = rank1_states()
    assert rank0.compute()["psnr_spanet"].item() == pytest.approx(want, abs=1e-9)
    assert len(rank0.names) == 1 and rank0.names[0].shape == (2, 256)
