"""Tests of src/models/irnn.py: values from the spec's worked example and hand-derived
recurrences, gradcheck of every backend, agreement of all backends with the plain-autograd
reference, module init, the compiler fallback and the build cache."""

import ctypes
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from src.models import irnn as irnn_mod
from src.models.irnn import IRNN, c_backend_available, irnn, resolve_backend
from src.ops import cbuild
from tests.conftest import REQUIREMENTS

UP, RIGHT, DOWN, LEFT = range(4)
SCAN_BACKENDS = ["naive", "torch", "c"]


def _require(backend):
    if backend == "c" and not REQUIREMENTS["c_compiler"][0]():
        pytest.skip(REQUIREMENTS["c_compiler"][1])


def _params(C, w, b, dtype=torch.float32):
    return torch.full((4, C), w, dtype=dtype), torch.full((4, C), b, dtype=dtype)


@pytest.mark.parametrize("backend", SCAN_BACKENDS)
def test_worked_example_horizontal_and_vertical(backend):
    _require(backend)
    w, b = _params(1, 0.5, 0.1)
    row = torch.tensor([1.0, -2.0, 3.0, 0.5])
    right = torch.tensor([1.0, 0.0, 3.1, 2.15])
    left = torch.tensor([1.1, 0.0, 3.35, 0.5])

    out = irnn(row.view(1, 1, 1, 4), w, b, backend)[0, :, 0, 0]  # (4 directions, W)
    torch.testing.assert_close(out[RIGHT], right)
    torch.testing.assert_close(out[LEFT], left)
    torch.testing.assert_close(out[UP], row.clamp(min=0))  # H = 1: only the first element
    torch.testing.assert_close(out[DOWN], row.clamp(min=0))

    # the same numbers as a column: down sweeps like right, up like left
    out = irnn(row.view(1, 1, 4, 1), w, b, backend)[0, :, 0, :, 0]
    torch.testing.assert_close(out[DOWN], right)
    torch.testing.assert_close(out[UP], left)
    torch.testing.assert_close(out[RIGHT], row.clamp(min=0))


@pytest.mark.parametrize("backend", SCAN_BACKENDS)
def test_first_element_has_no_bias(backend):
    """Zero input, bias 5, w = 0.5: border 0, then 5, 7.5, 8.75, ... (h = 0.5 h + 5)."""
    _require(backend)
    w, b = _params(2, 0.5, 5.0)
    out = irnn(torch.zeros(1, 2, 4, 5), w, b, backend)[0]
    seq = torch.tensor([0.0, 5.0, 7.5, 8.75, 9.375])
    torch.testing.assert_close(out[RIGHT], seq.expand(2, 4, 5))
    torch.testing.assert_close(out[LEFT], seq.flip(0).expand(2, 4, 5))
    torch.testing.assert_close(out[DOWN], seq[:4, None].expand(2, 4, 5))
    torch.testing.assert_close(out[UP], seq[:4].flip(0)[:, None].expand(2, 4, 5))


def _random_problem(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, C, H, W = shape
    x = torch.randn(shape, generator=g, dtype=dtype)
    # weights of both signs (training does not keep w >= 0) and below 1 in magnitude
    w = torch.rand(4, C, generator=g, dtype=dtype) * 1.8 - 0.9
    b = torch.rand(4, C, generator=g, dtype=dtype) - 0.5
    grad = torch.randn(B, 4, C, H, W, generator=g, dtype=dtype)
    return x, w, b, grad


@pytest.mark.parametrize("backend", SCAN_BACKENDS)
def test_identity_border_hand_computed(backend):
    """Border rule "identity" (h_0 = x_0, the code that trained the released checkpoint): a negative
    border value carries into the recurrence. x = [-1, 1, -0.2], w = 0.5, b = 0.1:
    identity: [-1, relu(-0.5 + 0.1 + 1) = 0.6, relu(0.3 + 0.1 - 0.2) = 0.2];
    relu:     [0, 1.1, relu(0.55 + 0.1 - 0.2) = 0.45]."""
    _require(backend)
    w, b = _params(1, 0.5, 0.1)
    row = torch.tensor([-1.0, 1.0, -0.2])
    out = irnn(row.view(1, 1, 1, 3), w, b, backend, border="identity")[0, :, 0, 0]
    torch.testing.assert_close(out[RIGHT], torch.tensor([-1.0, 0.6, 0.2]))
    # left from the right end: h2 = -0.2, h1 = relu(-0.1 + 0.1 + 1) = 1.0, h0 = relu(0.5 + 0.1 - 1) = 0
    torch.testing.assert_close(out[LEFT], torch.tensor([0.0, 1.0, -0.2]))
    torch.testing.assert_close(out[UP], row)  # H = 1: only the border element, no ReLU
    relu_out = irnn(row.view(1, 1, 1, 3), w, b, backend, border="relu")[0, :, 0, 0]
    torch.testing.assert_close(relu_out[RIGHT], torch.tensor([0.0, 1.1, 0.45]))
    col = irnn(row.view(1, 1, 3, 1), w, b, backend, border="identity")[0, :, 0, :, 0]
    torch.testing.assert_close(col[DOWN], torch.tensor([-1.0, 0.6, 0.2]))


@pytest.mark.parametrize("border", ["relu", "identity"])
@pytest.mark.parametrize("backend", SCAN_BACKENDS + ["identity"])
def test_gradcheck_float64(backend, border):
    _require(backend)
    x, w, b, _ = _random_problem((2, 3, 5, 7), torch.float64)
    assert (w < 0).any() and (w > 0).any()
    inputs = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    if backend == "identity":  # ignores weight and bias by design
        assert torch.autograd.gradcheck(lambda x: irnn(x, w, b, backend, border), (x,))
    else:
        assert torch.autograd.gradcheck(lambda *a: irnn(*a, backend=backend, border=border), inputs)


@pytest.mark.parametrize("border", ["relu", "identity"])
@pytest.mark.parametrize("backend", ["torch", "c"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 19, 21), (1, 2, 16, 24), (2, 1, 1, 9), (1, 2, 9, 1)])
def test_backends_match_naive(backend, dtype, shape, border):
    """Forward and all three gradients equal the plain-autograd loop (odd sizes exercise the
    8-row blocks' remainders, 16x24 the vectorised transposes), under both border rules."""
    _require(backend)
    x, w, b, grad = _random_problem(shape, dtype, seed=1)

    def run(name):
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        y = irnn(xr, wr, br, name, border)
        gx, gw, gb = torch.autograd.grad(y, (xr, wr, br), grad, allow_unused=True, materialize_grads=True)
        return y, gx, gw, gb

    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, ref in zip(run(backend), run("naive")):
        torch.testing.assert_close(got, ref, **tol)


def test_identity_backend_is_a_view_of_x():
    x = torch.randn(2, 3, 4, 5)
    w, b = _params(3, 0.2, 0.0)
    out = irnn(x, w, b, "identity")
    assert out.shape == (2, 4, 3, 4, 5)
    for d in range(4):
        assert torch.equal(out[:, d], x)


def _torch041_conv_bound(in_channels: int, kernel_size: int = 1) -> float:
    """PyTorch 0.4.1's ``_ConvNd.reset_parameters`` (the release's PyTorch), transcribed:
    n = in_channels; for k in kernel_size: n *= k; stdv = 1 / sqrt(n); weight and bias ~ U(-stdv, stdv).
    It did not divide by groups (today's PyTorch does: fan-in 1 for a depthwise 1x1, bound 1)."""
    n = in_channels * kernel_size * kernel_size
    return 1.0 / n**0.5


def _assert_uniform(values: torch.Tensor, bound: float):
    from scipy import stats

    v = values.detach().double().flatten().numpy()
    assert v.min() >= -bound and v.max() <= bound
    assert stats.kstest(v, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-3


def test_module_init_distributions():
    """release: w = 0.2 and b ~ U(+-1/sqrt(C)); conv_default: w and b ~ U(+-1/sqrt(C)); identity: w 1, b 0.
    The bound is the 0.4.1 formula (0.177 for C = 32), not today's depthwise default U(-1, 1)."""
    torch.manual_seed(0)
    C = 4096  # 16384 draws per tensor: a tight Kolmogorov-Smirnov test
    bound = _torch041_conv_bound(C)
    m = IRNN(C)
    assert dict(m.named_parameters()).keys() == {"weight", "bias"}
    assert m.weight.shape == m.bias.shape == (4, C)
    assert torch.all(m.weight == 0.2)
    _assert_uniform(m.bias, bound)
    m = IRNN(C, init="conv_default")
    _assert_uniform(m.weight, bound)
    _assert_uniform(m.bias, bound)
    m = IRNN(8, init="identity")
    assert torch.all(m.weight == 1.0) and torch.all(m.bias == 0.0)
    assert torch.all(IRNN(8, init_weight=0.7).weight == 0.7)
    # for SPANet's 32 channels: U(-0.177, 0.177), far from today's U(-1, 1)
    assert abs(_torch041_conv_bound(32) - 0.1768) < 1e-4
    assert torch.nn.Conv2d(32, 32, 1, groups=32).bias.abs().max() > 0.5  # today's default differs
    biases = torch.cat([IRNN(32).bias.flatten() for _ in range(200)])
    _assert_uniform(biases, _torch041_conv_bound(32))


def test_module_forward_and_errors():
    torch.manual_seed(0)
    m = IRNN(32)
    x = torch.randn(2, 32, 6, 5)
    torch.testing.assert_close(m(x), irnn(x, m.weight, m.bias, "naive"))
    m = IRNN(32, border="identity")
    torch.testing.assert_close(m(x), irnn(x, m.weight, m.bias, "naive", "identity"))
    with pytest.raises(ValueError, match="backend"):
        IRNN(8, backend="cuda")
    with pytest.raises(ValueError, match="border"):
        IRNN(8, border="zero")
    with pytest.raises(ValueError, match="init"):
        IRNN(8, init="xavier")
    with pytest.raises(ValueError, match="border"):
        irnn(x, m.weight, m.bias, border="none")


def test_bad_inputs_name_the_problem():
    w, b = _params(3, 0.2, 0.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        irnn(torch.zeros(3, 4, 5), w, b)
    with pytest.raises(ValueError, match=r"weight must be \(4, C\) = \(4, 2\)"):
        irnn(torch.zeros(1, 2, 4, 5), w, b[:, :2])
    with pytest.raises(ValueError, match="backend"):
        irnn(torch.zeros(1, 3, 4, 5), w, b, backend="fast")


def test_auto_backend_reported_once(caplog, monkeypatch):
    monkeypatch.setattr(irnn_mod, "_logged_auto", set())
    x = torch.zeros(1, 2, 3, 3)
    with caplog.at_level(logging.INFO, logger="src.models.irnn"):
        name = resolve_backend("auto", x)
        resolve_backend("auto", x)
    assert name == ("c" if c_backend_available() else "torch")
    msgs = [r.getMessage() for r in caplog.records if "uses" in r.getMessage()]
    assert msgs == [f"IRNN backend 'auto' uses {name!r} for cpu torch.float32 tensors"]


def test_falls_back_to_torch_without_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("SPANET_CACHE_DIR", str(tmp_path))  # nothing cached there
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    monkeypatch.setattr(irnn_mod.C_LIBRARY, "_tried", False)  # restored after the test, with the library
    monkeypatch.setattr(irnn_mod.C_LIBRARY, "_lib", None)
    x, w, b, _ = _random_problem((1, 2, 5, 6), torch.float32)
    with pytest.warns(RuntimeWarning, match="no-such-compiler-xyz"):
        assert resolve_backend("auto", x) == "torch"
    assert not c_backend_available()
    torch.testing.assert_close(irnn(x, w, b, "c"), irnn(x, w, b, "naive"))  # explicit "c" too


def test_library_cache_key(monkeypatch, tmp_path):
    monkeypatch.setenv("SPANET_CACHE_DIR", str(tmp_path))
    lib = irnn_mod.C_LIBRARY
    flags = lib.flag_sets[0]
    path = lib.path("gcc", flags)
    assert path.parent == tmp_path and path.name.startswith("irnn_scan_")
    assert lib.path("gcc", lib.flag_sets[1]) != path
    monkeypatch.setattr(cbuild, "cpu_id", lambda: "some other CPU")
    assert lib.path("gcc", flags) != path  # -march=native never crosses CPUs


@pytest.mark.c_compiler
def test_concurrent_builds_rename_atomically(monkeypatch, tmp_path):
    """Two builders at once (a fake, slow compiler that copies the real library) both end
    with the same complete, loadable file and leave no temporary files."""
    real = irnn_mod.build_c_library()
    fake_cc = tmp_path / "fake-cc"
    fake_cc.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys, time\n"
        "time.sleep(0.3)\n"
        f"shutil.copyfile({str(real)!r}, sys.argv[sys.argv.index('-o') + 1])\n"
    )
    fake_cc.chmod(0o755)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPANET_CACHE_DIR", str(cache))
    monkeypatch.setenv("CC", str(fake_cc))
    results = []
    threads = [threading.Thread(target=lambda: results.append(irnn_mod.build_c_library())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert [p.name for p in cache.iterdir()] == [results[0].name]
    assert ctypes.CDLL(str(results[0])).irnn_forward_f32 is not None


@pytest.mark.c_compiler
@pytest.mark.parametrize("border", ["relu", "identity"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_c_backend_with_two_threads_matches_torch(monkeypatch, dtype, border):
    """OpenMP path: 2 threads, several planes each (the other tests run on one thread), a
    64x64 plane (whole 8-row blocks, vectorised transposes) and odd sizes."""
    monkeypatch.setattr(irnn_mod, "_c_threads", lambda numel: 2)
    for shape in [(3, 5, 64, 64), (2, 3, 17, 40)]:
        x, w, b, grad = _random_problem(shape, dtype, seed=3)

        def run(name):
            xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
            y = irnn(xr, wr, br, name, border)
            return (y, *torch.autograd.grad(y, (xr, wr, br), grad))

        tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
        for got, ref in zip(run("c"), run("torch")):
            torch.testing.assert_close(got, ref, **tol)


@pytest.mark.c_compiler
def test_buffer_pool_reuses_memory(monkeypatch):
    monkeypatch.setattr(irnn_mod.POOL, "min_bytes", 0)
    x, w, b, _ = _random_problem((1, 2, 6, 7), torch.float32)
    ref = irnn(x, w, b, "naive")
    out = irnn(x, w, b, "c")
    ptr = out.data_ptr()
    del out
    out = irnn(x, w, b, "c")
    assert out.data_ptr() == ptr
    torch.testing.assert_close(out, ref)
    irnn_mod.POOL.clear()


@pytest.mark.gpu
@pytest.mark.triton
def test_triton_matches_naive_on_cuda():
    x, w, b, grad = _random_problem((2, 3, 37, 45), torch.float32)
    x, w, b, grad = (t.cuda() for t in (x, w, b, grad))
    assert resolve_backend("auto", x) == "triton"

    def run(name, border):
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        y = irnn(xr, wr, br, name, border)
        return (y, *torch.autograd.grad(y, (xr, wr, br), grad))

    for border in ("relu", "identity"):
        for got, ref in zip(run("triton", border), run("naive", border)):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
        for got, ref in zip(run("torch", border), run("naive", border)):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


_TRITON_INTERPRETER_CHECK = """
import torch
from src.models import irnn_triton as T
from src.models.irnn import _backward_torch, _forward_torch
for shape, border_relu in [((2, 3, 5, 7), True), ((1, 2, 9, 34), True), ((2, 3, 5, 7), False)]:
    g = torch.Generator().manual_seed(0)
    B, C, H, W = shape
    x = torch.randn(shape, generator=g)
    w = torch.rand(4, C, generator=g) * 1.8 - 0.9
    b = torch.rand(4, C, generator=g) - 0.5
    grad = torch.randn(B, 4, C, H, W, generator=g)
    h = _forward_torch(x, w, b, border_relu)
    torch.testing.assert_close(T.irnn_forward_triton(x, w, b, border_relu), h)
    for got, ref in zip(T.irnn_backward_triton(h, grad, w, border_relu), _backward_torch(h, grad, w, border_relu)):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
print("ok")
"""


@pytest.mark.triton
def test_triton_kernels_in_interpreter():
    """The Triton kernels on CPU through triton's interpreter (TRITON_INTERPRET=1, which must
    be set before triton compiles anything, hence the subprocess). Skipped without triton."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(repo)}
    res = subprocess.run(
        [sys.executable, "-c", _TRITON_INTERPRETER_CHECK],
        env=env,
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]
