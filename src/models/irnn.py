"""IRNN: the four-direction ReLU recurrence of SPANet's spatial attentive module.

For every channel c and direction d there is one scalar weight w[d, c] and one bias b[d, c]. Along each
direction the first element (the border the sweep starts from) has no bias and no recurrence, and every later
element is relu(w * h_prev + b + x). The directions (:data:`DIRECTIONS`, the one table of their order):

* up    (index 0): sweeps bottom -> top along H
* right (index 1): sweeps left -> right along W
* down  (index 2): sweeps top -> bottom along H
* left  (index 3): sweeps right -> left along W

The border rule (``border=``) says what the first element is:

* ``"relu"``: h_0 = relu(x_0), the authors' release code (its CUDA kernel);
* ``"identity"``: h_0 = x_0, the PyTorch loop of the commit that shipped the released checkpoint (the
  checkpoint was trained with it; see docs/models.md).

Example, one row x = [1, -2, 3, 0.5], w = 0.5, b = 0.1: right = [1, 0, 3.1, 2.15], left = [1.1, 0, 3.35, 0.5].

``irnn(x, weight, bias)`` maps x (B, C, H, W) to (B, 4, C, H, W) (directions in the order above, so
``.flatten(1, 2)`` is SPANet's 128-channel concatenation). Values are features, not images: any real range.

Backends (``backend=``):

* ``"c"``: linear-time scan in C (csrc/irnn_scan.c), compiled at first use and loaded with ctypes
  (:mod:`src.ops.cbuild`); OpenMP over (batch, channel) planes; CPU only.
* ``"triton"``: the same scan as Triton kernels (:mod:`src.models.irnn_triton`); CUDA only.
* ``"torch"``: linear-time scan in plain PyTorch (a Python loop over rows / columns with whole-row tensor
  ops); any device. Same hand-written backward as the compiled ones.
* ``"naive"``: direct autograd of a per-row / per-column loop; the reference in tests.
* ``"identity"``: returns x expanded to 4 directions (no work; a benchmark floor).
* ``"auto"``: "c" on CPU when it builds, "triton" on CUDA when triton imports, else "torch".

Backward (shared by c / triton / torch), per direction with G_t = dL/dh_t:
g_t = [h_t > 0] * (G_t + w * g_{t+1}) (at t = 0 under the identity border rule the factor is 1),
dx = sum over directions of g, dw = sum_{t>0} g_t * h_{t-1}, db = sum_{t>0} g_t. It needs h only: the torch
and triton backends read the saved outputs; the C backend saves x and recomputes h plane by plane in cache
(reading 1 plane per (b, c) instead of 4: memory, not arithmetic, bounds the scan). The C backend's outputs
of 1 MB or more come from a :class:`src.ops.buffer_pool.BufferPool` (``$SPANET_IRNN_POOL_MB``, default 4096;
0 turns it off): writing a fresh tensor page-faults, which can take longer than the scan itself.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from src.ops.buffer_pool import BufferPool
from src.ops.cbuild import CLibrary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Direction:
    """One IRNN direction: its name (as the release names its IRNN convolutions), whether it sweeps along H
    (else along W), and whether it starts from the far edge (bottom / right)."""

    name: str
    vertical: bool
    reverse: bool


#: The directions in the order of the (4, C) weight/bias rows and of the output's dim 1.
DIRECTIONS: tuple[Direction, ...] = (
    Direction("up", vertical=True, reverse=True),
    Direction("right", vertical=False, reverse=False),
    Direction("down", vertical=True, reverse=False),
    Direction("left", vertical=False, reverse=True),
)
UP, RIGHT, DOWN, LEFT = range(4)
BACKENDS = ("auto", "c", "triton", "torch", "naive", "identity")
BORDERS = ("relu", "identity")
#: IRNN initialisations (see :class:`IRNN`)
INITS = ("release", "conv_default", "identity")

_C_TYPES = {torch.float32: "f32", torch.float64: "f64"}
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_CSRC = Path(__file__).with_name("csrc")

_logged_auto: set = set()  # (device, dtype) pairs whose "auto" choice was logged
_triton_state: dict = {}  # {"ok": bool} once the Triton kernels were tried


def _declare_c_api(lib: ctypes.CDLL) -> None:
    """Argument types of the scan's entry points (see csrc/irnn_scan_impl.h)."""
    i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for sfx in _C_TYPES.values():
        f = getattr(lib, f"irnn_forward_{sfx}")  # x, w, b, out, B, C, H, W, border_relu, threads
        f.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, cint, cint]
        f.restype = cint
        f = getattr(lib, f"irnn_backward_{sfx}")  # x, grad_h, w, b, dx, dw_part, db_part, B, C, H, W, ...
        f.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, i64, i64, cint, cint]
        f.restype = cint
        f = getattr(lib, f"irnn_sweep_v_{sfx}")  # x, x_cs, out, o_cs, scale, C, rows, W, w, b, reverse,
        f.argtypes = [ptr, i64, ptr, i64, ptr, i64, i64, i64, ptr, ptr, cint, cint, ptr, ptr, i64, cint]
        f.restype = cint  # ... border_relu, init, final, final_row, threads
        f = getattr(lib, f"irnn_sweep_h_{sfx}")  # x, x_cs, right, left, o_cs, scale_r, scale_l, C, rows, W, w, b,
        f.argtypes = [ptr, i64, ptr, ptr, i64, ptr, ptr, i64, i64, i64, ptr, ptr, cint, cint]
        f.restype = cint  # ... border_relu, threads


#: The C scan: tried in order, the first flag set that compiles is used (-march=native is worth 1.4-2x;
#: the last is for compilers without OpenMP, e.g. Apple clang: single-threaded but still linear-time).
#: -fno-trapping-math lets gcc turn `mask ? a : 0` into a vector blend instead of a branch.
C_LIBRARY = CLibrary(
    name="irnn_scan",
    sources=(_CSRC / "irnn_scan.c", _CSRC / "irnn_scan_impl.h"),
    flag_sets=(["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3", "-fopenmp-simd"]),
    common_flags=["-std=c11", "-fno-trapping-math", "-shared", "-fPIC"],
    declare=_declare_c_api,
    unavailable="IRNN C scan unavailable, falling back to the pure-PyTorch scan",
)
#: Recycled output memory of the C backend
POOL = BufferPool(int(os.environ.get("SPANET_IRNN_POOL_MB", "4096")) << 20)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def irnn(x: Tensor, weight: Tensor, bias: Tensor, backend: str = "auto", border: str = "relu") -> Tensor:
    """Four-direction IRNN of ``x`` (B, C, H, W) -> (B, 4, C, H, W), order up, right, down, left.

    ``weight`` and ``bias`` are (4, C), rows in the same direction order. ``border``: "relu"
    (h_0 = relu(x_0)) or "identity" (h_0 = x_0). See the module docstring for the recurrence
    and the backends.
    """
    _check_inputs(x, weight, bias, backend, border)
    name = resolve_backend(backend, x)
    if name == "identity":
        return x.unsqueeze(1).expand(-1, 4, -1, -1, -1)
    if name == "naive":
        return _irnn_naive(x, weight, bias, border)
    return _IRNNFunction.apply(x, weight, bias, name, border == "relu")


class IRNN(nn.Module):
    """IRNN layer with learnable (4, C) ``weight`` and ``bias``.

    ``init`` (the release stores each direction as a depthwise 1x1 ``Conv2d(C, C, groups=C)``,
    created under PyTorch 0.4.1, whose default init drew weight and bias from U(-1/sqrt(C),
    +1/sqrt(C)): it did not divide the fan-in by the groups):

    * ``"release"``: the authors' release code: weight 0.2, bias U(-1/sqrt(C), 1/sqrt(C));
    * ``"conv_default"``: the code of the commit that shipped the released checkpoint:
      weight and bias both U(-1/sqrt(C), 1/sqrt(C));
    * ``"identity"``: identity initialisation of Le et al. (the IRNN the paper cites):
      weight 1, bias 0.

    ``init_weight`` (optional) replaces the initial weight of the scheme by a constant.
    ``border``: "relu" | "identity", see :func:`irnn`.
    forward: x (B, C, H, W) -> (B, 4, C, H, W), directions up, right, down, left.
    """

    def __init__(
        self,
        channels: int,
        init: str = "release",
        init_weight: Optional[float] = None,
        border: str = "relu",
        backend: str = "auto",
    ):
        super().__init__()
        if channels < 1:
            raise ValueError(f"IRNN channels must be >= 1, got {channels}")
        if backend not in BACKENDS:
            raise ValueError(f"IRNN backend must be one of {BACKENDS}, got {backend!r}")
        if border not in BORDERS:
            raise ValueError(f"IRNN border must be one of {BORDERS}, got {border!r}")
        if init not in INITS:
            raise ValueError(f"IRNN init must be one of {INITS}, got {init!r}")
        self.channels = channels
        self.backend = backend
        self.border = border
        self.init = init
        self.weight = nn.Parameter(torch.empty(4, channels))
        self.bias = nn.Parameter(torch.empty(4, channels))
        self.init_weight = init_weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.channels)  # PyTorch 0.4.1's Conv2d default, fan-in C * 1 * 1
        with torch.no_grad():
            if self.init == "identity":
                self.weight.fill_(1.0)
                self.bias.zero_()
            else:
                if self.init == "release":
                    self.weight.fill_(0.2)
                else:
                    self.weight.uniform_(-bound, bound)
                self.bias.uniform_(-bound, bound)
            if self.init_weight is not None:
                self.weight.fill_(float(self.init_weight))

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_autocast_enabled(x.device.type):
            # mixed precision: the recurrence runs in float32 (a bf16 running sum along a whole row or
            # column keeps only 8 significant bits); the convolutions around it stay in low precision
            with torch.autocast(x.device.type, enabled=False):
                return irnn(x.float(), self.weight, self.bias, self.backend, self.border)
        return irnn(x, self.weight, self.bias, self.backend, self.border)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, init={self.init!r}, border={self.border!r}, backend={self.backend!r}"


def resolve_backend(backend: str, x: Tensor) -> str:
    """The backend that ``irnn(x, ..., backend)`` runs ("auto" resolved for x's device and dtype)."""
    if backend not in BACKENDS:
        raise ValueError(f"IRNN backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    device = x.device.type
    if device == "cpu" and x.dtype in _C_TYPES and C_LIBRARY.load() is not None:
        name = "c"
    elif device == "cuda" and x.dtype in _TRITON_DTYPES and _triton_available():
        name = "triton"
    else:
        name = "torch"
    key = (device, x.dtype)
    if key not in _logged_auto:
        _logged_auto.add(key)
        logger.info("IRNN backend 'auto' uses %r for %s %s tensors", name, device, x.dtype)
    return name


def c_backend_available() -> bool:
    """Whether the C scan is built (building it now if needed) and loadable."""
    return C_LIBRARY.load() is not None


def build_c_library() -> Path:
    """Compile csrc/irnn_scan.c (if not cached) and return the shared library's path (RuntimeError when no
    compiler works); see :class:`src.ops.cbuild.CLibrary`."""
    return C_LIBRARY.build()


def irnn_vertical(
    x: Tensor,
    direction: int,
    weight: Tensor,
    bias: Tensor,
    out: Tensor,
    scale: Optional[Tensor] = None,
    init: Optional[Tensor] = None,
    final: Optional[Tensor] = None,
    final_row: int = -1,
    border: str = "relu",
) -> None:
    """One vertical IRNN direction (``direction``: 0 up or 2 down) of x (C, rows, W) into ``out``; no autograd.

    Band sweeps for the memory-lean inference path (:mod:`src.models.spanet_lean`): ``x`` and ``out`` are
    (C, rows, W) with contiguous rows (any plane stride, e.g. a band of rows of a (1, C, H, W) map, or a slice of
    the channels of one); ``weight`` and ``bias`` are the direction's (C,) rows. What is written is
    ``h * scale`` with ``scale`` (rows, W) (None: h), the recurrence runs on h. ``init`` (C, W): the state just
    before the first row swept, to continue a sweep that ended outside x (None: the border rule); ``final``
    (C, W) receives the state at row ``final_row``. CPU float32 / float64 use the C scan (the same arithmetic as
    :func:`irnn`), other tensors a PyTorch loop over rows.
    """
    d = DIRECTIONS[direction]
    if not d.vertical:
        raise ValueError(f"irnn_vertical: direction {direction} ({d.name}) is horizontal")
    if x.numel() == 0:
        return
    final_row = final_row % x.shape[1]
    w, b = weight.detach().to(x.dtype).contiguous(), bias.detach().to(x.dtype).contiguous()
    if _use_c(x, out, scale):
        C, rows, W = x.shape
        rc = getattr(C_LIBRARY.load(), f"irnn_sweep_v_{_C_TYPES[x.dtype]}")(
            x.data_ptr(),
            x.stride(0),
            out.data_ptr(),
            out.stride(0),
            _ptr(scale),
            C,
            rows,
            W,
            w.data_ptr(),
            b.data_ptr(),
            int(d.reverse),
            int(border == "relu"),
            _ptr(init),
            _ptr(final),
            final_row,
            _c_threads(x.numel()),
        )
        if rc != 0:
            raise MemoryError("IRNN C sweep: could not allocate scratch memory")
        return
    h = init
    for n in range(x.shape[1]):
        i = x.shape[1] - 1 - n if d.reverse else n
        if h is None:
            h = x[:, i].clamp(min=0) if border == "relu" else x[:, i].clone()
        else:  # the C scan's order of additions
            h = torch.relu(w[:, None] * h + b[:, None] + x[:, i])
        out[:, i] = h if scale is None else h * scale[i]
        if final is not None and i == final_row:
            final.copy_(h)


def irnn_horizontal(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    right: Tensor,
    left: Tensor,
    scale_right: Optional[Tensor] = None,
    scale_left: Optional[Tensor] = None,
    border: str = "relu",
) -> None:
    """The right and left IRNN directions of x (C, rows, W) into ``right`` and ``left``; no autograd.

    Shapes and ``scale_*`` as in :func:`irnn_vertical`; ``weight`` and ``bias`` are the full (4, C) parameters.
    Rows are whole, so a band of rows is swept exactly as the whole image is. CPU float32 / float64: the C scan;
    CUDA with triton: the Triton kernels of :func:`irnn` on the band; otherwise a PyTorch loop over columns.
    """
    if x.numel() == 0:
        return
    w = weight.detach()[[RIGHT, LEFT]].to(x.dtype).contiguous()
    b = bias.detach()[[RIGHT, LEFT]].to(x.dtype).contiguous()
    if _use_c(x, right, scale_right) and _use_c(x, left, scale_left) and right.stride(0) == left.stride(0):
        C, rows, W = x.shape
        rc = getattr(C_LIBRARY.load(), f"irnn_sweep_h_{_C_TYPES[x.dtype]}")(
            x.data_ptr(),
            x.stride(0),
            right.data_ptr(),
            left.data_ptr(),
            right.stride(0),
            _ptr(scale_right),
            _ptr(scale_left),
            C,
            rows,
            W,
            w.data_ptr(),
            b.data_ptr(),
            int(border == "relu"),
            _c_threads(x.numel()),
        )
        if rc != 0:
            raise MemoryError("IRNN C sweep: could not allocate scratch memory")
        return
    if x.device.type == "cuda" and x.dtype in _TRITON_DTYPES and _triton_available():
        full = _forward_triton(
            x[None].contiguous(),
            weight.detach().to(x.dtype).contiguous(),
            bias.detach().to(x.dtype).contiguous(),
            border == "relu",
        )[0]
        for out, d, scale in ((right, RIGHT, scale_right), (left, LEFT, scale_left)):
            torch.mul(full[d], 1 if scale is None else scale, out=out)
        return
    for k, (out, scale, rev) in enumerate(((right, scale_right, False), (left, scale_left, True))):
        h = None
        for n in range(x.shape[2]):
            j = x.shape[2] - 1 - n if rev else n
            if h is None:
                h = x[:, :, j].clamp(min=0) if border == "relu" else x[:, :, j].clone()
            else:
                h = torch.relu(w[k, :, None] * h + (b[k, :, None] + x[:, :, j]))
            out[:, :, j] = h if scale is None else h * scale[:, j]


def _use_c(x: Tensor, out: Tensor, scale: Optional[Tensor]) -> bool:
    """Whether the C band sweeps take these tensors: CPU float32/64, rows contiguous, scale (rows, W) contiguous."""
    if x.device.type != "cpu" or x.dtype not in _C_TYPES or C_LIBRARY.load() is None:
        return False
    w = x.shape[2]
    planes_ok = all(t.dtype == x.dtype and t.shape == x.shape and t.stride()[1:] == (w, 1) for t in (x, out))
    return planes_ok and (scale is None or (scale.dtype == x.dtype and scale.stride() == (w, 1)))


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _check_inputs(x: Tensor, weight: Tensor, bias: Tensor, backend: str, border: str) -> None:
    if border not in BORDERS:
        raise ValueError(f"irnn: border must be one of {BORDERS}, got {border!r}")
    if x.dim() != 4:
        raise ValueError(f"irnn: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    C = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias)):
        if tuple(t.shape) != (4, C):
            raise ValueError(f"irnn: {name} must be (4, C) = (4, {C}), got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"irnn: {name} is on {t.device} but x is on {x.device}")
    if not x.is_floating_point():
        raise TypeError(f"irnn: x must be a floating-point tensor, got {x.dtype}")
    if backend == "c":
        if x.device.type != "cpu":
            raise ValueError(f"irnn backend 'c' runs on CPU tensors only, x is on {x.device}")
        if x.dtype not in _C_TYPES:
            raise TypeError(f"irnn backend 'c' supports float32/float64, got {x.dtype}")
    if backend == "triton":
        if x.device.type != "cuda":
            raise ValueError(f"irnn backend 'triton' runs on CUDA tensors only, x is on {x.device}")
        if x.dtype not in _TRITON_DTYPES:
            raise TypeError(f"irnn backend 'triton' supports float16/bfloat16/float32, got {x.dtype}")
        if not _triton_available():
            raise RuntimeError("irnn backend 'triton' needs the triton package (pip install triton)")


# --------------------------------------------------------------------------------------
# Autograd function shared by the c, triton and torch backends
# --------------------------------------------------------------------------------------


class _IRNNFunction(torch.autograd.Function):
    """Linear-time forward; backward from the saved outputs h (torch, triton) or from x (c; see module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, backend: str, border_relu: bool) -> Tensor:
        x = x.contiguous()
        w = weight.detach().to(x.dtype).contiguous()
        b = bias.detach().to(x.dtype).contiguous()
        if backend == "c" and C_LIBRARY.load() is None:
            backend = "torch"  # explicit "c" without a compiler: warned once by C_LIBRARY.load
        out = _FORWARD[backend](x, w, b, border_relu)
        ctx.backend = backend
        ctx.border_relu = border_relu
        ctx.save_for_backward(x if backend in _BACKWARD_FROM_X else out, w, b)
        ctx.weight_dtype = weight.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        saved, w, b = ctx.saved_tensors
        grad_out = grad_out.to(saved.dtype).contiguous()
        dx, dw, db = _BACKWARD[ctx.backend](saved, grad_out, w, b, ctx.border_relu)
        return dx, dw.to(ctx.weight_dtype), db.to(ctx.weight_dtype), None, None


# --------------------------------------------------------------------------------------
# "c" backend
# --------------------------------------------------------------------------------------


def _c_threads(numel: int) -> int:
    """torch's thread count, but one thread for small inputs (waking threads costs more)."""
    return max(1, min(torch.get_num_threads(), numel // 32768))


def _forward_c(x: Tensor, w: Tensor, b: Tensor, border_relu: bool) -> Tensor:
    B, C, H, W = x.shape
    out = POOL.empty((B, 4, C, H, W), x.dtype)
    if out.numel():
        fn = getattr(C_LIBRARY.load(), f"irnn_forward_{_C_TYPES[x.dtype]}")
        rc = fn(
            x.data_ptr(),
            w.data_ptr(),
            b.data_ptr(),
            out.data_ptr(),
            B,
            C,
            H,
            W,
            int(border_relu),
            _c_threads(x.numel()),
        )
        if rc != 0:
            raise MemoryError("IRNN C scan: could not allocate scratch memory")
    return out


def _backward_c(x: Tensor, grad_h: Tensor, w: Tensor, b: Tensor, border_relu: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients from the forward's INPUT x: the C scan recomputes h plane by plane."""
    B, C, H, W = x.shape
    dx = POOL.empty((B, C, H, W), x.dtype)
    dw_part = torch.zeros((B, 4, C), dtype=x.dtype)
    db_part = torch.zeros((B, 4, C), dtype=x.dtype)
    if x.numel():
        fn = getattr(C_LIBRARY.load(), f"irnn_backward_{_C_TYPES[x.dtype]}")
        rc = fn(
            x.data_ptr(),
            grad_h.data_ptr(),
            w.data_ptr(),
            b.data_ptr(),
            dx.data_ptr(),
            dw_part.data_ptr(),
            db_part.data_ptr(),
            B,
            C,
            H,
            W,
            int(border_relu),
            _c_threads(dx.numel()),
        )
        if rc != 0:
            raise MemoryError("IRNN C scan: could not allocate scratch memory")
    return dx, dw_part.sum(0), db_part.sum(0)


# --------------------------------------------------------------------------------------
# "torch" backend: every sweep is a scan along dim 2 of a (B, C, L, M) tensor; horizontal
# sweeps run on the transpose
# --------------------------------------------------------------------------------------


def _scan_torch(x: Tensor, w: Tensor, b: Tensor, reverse: bool, out: Tensor, border_relu: bool) -> None:
    """out[:, :, t] = relu(w * out[:, :, t_prev] + b + x[:, :, t]) along dim 2; x (B,C,L,M)."""
    L = x.shape[2]
    order = range(L - 1, -1, -1) if reverse else range(L)
    wv = w.view(1, -1, 1)
    xb = x + b.view(1, -1, 1, 1)
    prev = None
    for t in order:
        if prev is None:
            if border_relu:
                torch.clamp(x[:, :, t], min=0, out=out[:, :, t])
            else:
                out[:, :, t].copy_(x[:, :, t])
        else:
            torch.addcmul(xb[:, :, t], wv, out[:, :, prev], out=out[:, :, t]).clamp_(min=0)
        prev = t


def _scan_torch_backward(h: Tensor, G: Tensor, w: Tensor, reverse: bool, border_relu: bool):
    """Backward of _scan_torch: returns g (= dL/dx of this sweep), dw (C,), db (C,)."""
    L = h.shape[2]
    order = range(L) if reverse else range(L - 1, -1, -1)  # reverse of the sweep
    wv = w.view(1, -1, 1)
    mask = (h > 0).to(h.dtype)  # float once, so the loop multiplies without type promotion
    if not border_relu and L:
        mask[:, :, L - 1 if reverse else 0] = 1.0  # h_0 = x_0: no ReLU to mask
    g = torch.empty_like(h)
    nxt = None
    for t in order:
        if nxt is None:
            torch.mul(G[:, :, t], mask[:, :, t], out=g[:, :, t])
        else:
            torch.addcmul(G[:, :, t], wv, g[:, :, nxt], out=g[:, :, t]).mul_(mask[:, :, t])
        nxt = t
    if reverse:  # predecessor of t is t + 1; position L-1 is the first
        g_later, h_prev = g[:, :, :-1], h[:, :, 1:]
    else:
        g_later, h_prev = g[:, :, 1:], h[:, :, :-1]
    return g, (g_later * h_prev).sum((0, 2, 3)), g_later.sum((0, 2, 3))


def _forward_torch(x: Tensor, w: Tensor, b: Tensor, border_relu: bool = True) -> Tensor:
    B, C, H, W = x.shape
    out = x.new_empty((B, 4, C, H, W))
    xt = x.transpose(2, 3).contiguous()  # horizontal sweeps run on rows of the transpose
    for d, direction in enumerate(DIRECTIONS):
        if direction.vertical:
            _scan_torch(x, w[d], b[d], direction.reverse, out[:, d], border_relu)
        else:
            buf = torch.empty_like(xt)
            _scan_torch(xt, w[d], b[d], direction.reverse, buf, border_relu)
            out[:, d] = buf.transpose(2, 3)
    return out


def _backward_torch(h: Tensor, grad_h: Tensor, w: Tensor, border_relu: bool = True):
    dx = torch.zeros_like(h[:, 0])
    dw = torch.empty_like(w)
    db = torch.empty_like(w)
    for d, direction in enumerate(DIRECTIONS):
        hd, Gd = h[:, d], grad_h[:, d]
        if not direction.vertical:
            hd, Gd = hd.transpose(2, 3).contiguous(), Gd.transpose(2, 3).contiguous()
        g, dw[d], db[d] = _scan_torch_backward(hd, Gd, w[d], direction.reverse, border_relu)
        dx += g if direction.vertical else g.transpose(2, 3)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# "triton" backend (CUDA)
# --------------------------------------------------------------------------------------


def _triton_available() -> bool:
    """Whether src/models/irnn_triton.py imports (needs triton; only tried for CUDA inputs)."""
    if "ok" not in _triton_state:
        try:
            from src.models import irnn_triton  # noqa: F401

            _triton_state["ok"] = True
        except Exception as e:  # ImportError, or triton failing to find a driver
            logger.info("triton unavailable (%s); CUDA tensors use the 'torch' backend", e)
            _triton_state["ok"] = False
    return _triton_state["ok"]


def _forward_triton(x: Tensor, w: Tensor, b: Tensor, border_relu: bool) -> Tensor:
    from src.models.irnn_triton import irnn_forward_triton

    return irnn_forward_triton(x, w, b, border_relu)


def _backward_triton(h: Tensor, grad_h: Tensor, w: Tensor, border_relu: bool):
    from src.models.irnn_triton import irnn_backward_triton

    return irnn_backward_triton(h, grad_h, w, border_relu)


_FORWARD = {"c": _forward_c, "torch": _forward_torch, "triton": _forward_triton}
# backward(saved, grad_h, w, b, border_relu) -> (dx, dw, db). "saved" is the forward's input x for the backends
# in _BACKWARD_FROM_X (the C scan recomputes h from x in cache: 1 plane of memory traffic per (b, c) instead
# of 4), else its output h.
_BACKWARD = {
    "c": _backward_c,
    "torch": lambda h, grad_h, w, b, border_relu: _backward_torch(h, grad_h, w, border_relu),
    "triton": lambda h, grad_h, w, b, border_relu: _backward_triton(h, grad_h, w, border_relu),
}
_BACKWARD_FROM_X = frozenset({"c"})


# --------------------------------------------------------------------------------------
# "naive" backend: plain autograd, the reference
# --------------------------------------------------------------------------------------


def _irnn_naive(x: Tensor, weight: Tensor, bias: Tensor, border: str = "relu") -> Tensor:
    """Direct autograd of the recurrence, one row / column at a time (slow, obviously right). Each direction
    is written out by hand, independently of :data:`DIRECTIONS`, so the tests check that table too."""
    C = x.shape[1]

    def sweep(slices, d):
        w, b = weight[d].view(1, C, 1), bias[d].view(1, C, 1)
        hs = [torch.relu(slices[0]) if border == "relu" else slices[0]]
        for s in slices[1:]:
            hs.append(torch.relu(w * hs[-1] + b + s))
        return hs

    rows, cols = list(x.unbind(2)), list(x.unbind(3))
    up = torch.stack(sweep(rows[::-1], 0)[::-1], dim=2)
    right = torch.stack(sweep(cols, 1), dim=3)
    down = torch.stack(sweep(rows, 2), dim=2)
    left = torch.stack(sweep(cols[::-1], 3)[::-1], dim=3)
    return torch.stack([up, right, down, left], dim=1)


__all__ = [
    "IRNN",
    "irnn",
    "irnn_vertical",
    "irnn_horizontal",
    "resolve_backend",
    "c_backend_available",
    "build_c_library",
    "Direction",
    "DIRECTIONS",
    "BACKENDS",
    "BORDERS",
    "INITS",
]
