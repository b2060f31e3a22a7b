"""The authors' IRNN design (one output per thread, rescanning from the border), our reference on GPUs: it
computes the same IRNN as the suite's reference backend."""

from __future__ import annotations

import pytest
import torch

from src.models.irnn import _irnn_naive
from tests.conftest import load_experiment_script


def inputs(device="cpu"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g)
    w = torch.rand(4, 3, generator=g) * 1.5  # also > 1: the rescan must not drift
    b = torch.rand(4, 3, generator=g) * 2 - 1
    return x.to(device), w.to(device), b.to(device)


def test_rescan_design_in_torch_equals_the_reference():
    design = load_experiment_script("irnn_authors_design")
    x, w, b = inputs()
    torch.testing.assert_close(design.irnn_rescan_torch(x, w, b), _irnn_naive(x, w, b))


@pytest.mark.gpu
@pytest.mark.triton
def test_rescan_design_in_triton_equals_the_reference_forward_and_backward():
    design = load_experiment_script("irnn_authors_design")
    x, w, b = (t.requires_grad_() for t in inputs("cuda"))
    grad = torch.randn(2, 4, 3, 7, 9, device="cuda")
    got = design.irnn_rescan_triton(x, w, b)
    want = _irnn_naive(x, w, b)
    torch.testing.assert_close(got, want)
    for a, e in zip(torch.autograd.grad(got, (x, w, b), grad), torch.autograd.grad(want, (x, w, b), grad)):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)
