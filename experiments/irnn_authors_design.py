"""The IRNN as the authors' CUDA kernels compute it, as a reference to race the suite's scan against on a GPU.

The release's kernels give every output element its own CUDA thread, which recomputes the recurrence from the
image border up to its own position: O(L) work per output, O(HW(H+W)) per plane for the four directions,
where the suite's scan (src/models/irnn.py, Triton on CUDA) walks each row/column once, O(HW). Written here
from that description, in two forms:

* :func:`irnn_rescan_torch` - the forward in plain PyTorch, vectorised over all outputs of one sweep position
  (any device; the CPU tests check it against the suite's "naive" backend);
* :func:`irnn_rescan_triton` - forward and backward as Triton kernels, one lane per output, each rescanning
  from the border (forward) or from the far border (backward, reading the saved outputs); CUDA only.

    python experiments/irnn_authors_design.py --device cuda     # one table: ours vs this design vs the floor

The table: forward+backward of all four directions on (B, 32, H, W) float32 for the suite's "auto" backend
and this design, medians over --repeats, and the bandwidth floor of experiments/bench_spanet.py (11 N values
moved at the measured copy bandwidth). Targets (issue): ours within 3x of the floor, and faster than this design.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without install

SIZES = {"small": (8, 64), "large": (1, 512)}
CHANNELS = 32


# --- the design in PyTorch (forward) -------------------------------------------------------------------------
def _sweep_rescan(x: Tensor, w: Tensor, b: Tensor, dim: int, reverse: bool) -> Tensor:
    """One direction: output t recomputed from the border for every t (x: (B, C, H, W); w, b: (C,))."""
    xs = x.flip(dim) if reverse else x
    L = xs.shape[dim]
    w, b = w.view(1, -1, 1, 1), b.view(1, -1, 1, 1)
    out = torch.empty_like(xs)
    for t in range(L):  # every output of position t ...
        h = torch.relu(xs.narrow(dim, 0, 1))
        for k in range(1, t + 1):  # ... rescans positions 0..t
            h = torch.relu(w * h + b + xs.narrow(dim, k, 1))
        out.narrow(dim, t, 1).copy_(h)
    return out.flip(dim) if reverse else out


def irnn_rescan_torch(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, H, W), directions up, right, down, left (as src.models.irnn.irnn)."""
    up = _sweep_rescan(x, weight[0], bias[0], 2, True)
    right = _sweep_rescan(x, weight[1], bias[1], 3, False)
    down = _sweep_rescan(x, weight[2], bias[2], 2, False)
    left = _sweep_rescan(x, weight[3], bias[3], 3, True)
    return torch.stack([up, right, down, left], dim=1)


# --- the design in Triton (forward + backward) ----------------------------------------------------------------
_DIRECTIONS = ((True, True), (False, False), (True, False), (False, True))  # (along H?, reverse?) per direction


def _build_triton():
    import triton
    import triton.language as tl

    @triton.jit
    def fwd(
        x_ptr,
        out_ptr,
        w_ptr,
        b_ptr,
        C,
        L,
        M,
        step_stride,
        lane_stride,
        plane_size,
        d,
        REVERSE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        plane = tl.program_id(0).to(tl.int64)
        bi, c = plane // C, plane % C
        idx = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # one lane per output (position s, lane m)
        mask = idx < L * M
        s, m = idx // M, idx % M
        x_base = x_ptr + plane * plane_size + m.to(tl.int64) * lane_stride
        w = tl.load(w_ptr + d * C + c)
        b = tl.load(b_ptr + d * C + c)
        h = tl.zeros((BLOCK,), dtype=tl.float32)
        for n in range(0, L):  # rescan from the border; lanes past their own position keep their value
            if REVERSE:
                pos = L - 1 - n
            else:
                pos = n
            xv = tl.load(x_base + pos * step_stride, mask=mask & (n <= s), other=0.0)
            new = tl.where(n == 0, tl.maximum(xv, 0.0), tl.maximum(w * h + b + xv, 0.0))
            h = tl.where(n <= s, new, h)
        if REVERSE:
            pos_s = L - 1 - s
        else:
            pos_s = s
        o = out_ptr + ((bi * 4 + d) * C + c) * plane_size + m.to(tl.int64) * lane_stride + pos_s * step_stride
        tl.store(o, h, mask=mask)

    @triton.jit
    def bwd(
        h_ptr,
        gh_ptr,
        g_ptr,
        w_ptr,
        C,
        L,
        M,
        step_stride,
        lane_stride,
        plane_size,
        d,
        REVERSE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        plane = tl.program_id(0).to(tl.int64)
        bi, c = plane // C, plane % C
        idx = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = idx < L * M
        s, m = idx // M, idx % M
        base = ((bi * 4 + d) * C + c) * plane_size + m.to(tl.int64) * lane_stride
        w = tl.load(w_ptr + d * C + c)
        g = tl.zeros((BLOCK,), dtype=tl.float32)
        for n in range(0, L):  # from the far border back to the lane's own position
            k = L - 1 - n  # sweep order
            if REVERSE:
                pos = n
            else:
                pos = k
            active = mask & (k >= s)
            hv = tl.load(h_ptr + base + pos * step_stride, mask=active, other=0.0)
            gv = tl.load(gh_ptr + base + pos * step_stride, mask=active, other=0.0)
            g = tl.where(k >= s, tl.where(hv > 0, gv + w * g, 0.0), g)
        if REVERSE:
            pos_s = L - 1 - s
        else:
            pos_s = s
        tl.store(g_ptr + base + pos_s * step_stride, g, mask=mask)

    return triton, fwd, bwd


_KERNELS: dict = {}
BLOCK = 128


def _launch(kind: str, *tensors: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    if not _KERNELS:
        _KERNELS["triton"], _KERNELS["fwd"], _KERNELS["bwd"] = _build_triton()
    triton = _KERNELS["triton"]
    src = tensors[0]
    B, C, H, W = (src.shape[0], src.shape[-3], src.shape[-2], src.shape[-1])
    out = torch.empty((B, 4, C, H, W), device=src.device, dtype=torch.float32)
    for d, (vertical, reverse) in enumerate(_DIRECTIONS):
        L, M = (H, W) if vertical else (W, H)
        step, lane = (W, 1) if vertical else (1, W)
        grid = (B * C, triton.cdiv(L * M, BLOCK))
        if kind == "fwd":
            _KERNELS["fwd"][grid](src, out, w, b, C, L, M, step, lane, H * W, d, REVERSE=reverse, BLOCK=BLOCK)
        else:
            _KERNELS["bwd"][grid](
                tensors[0], tensors[1], out, w, C, L, M, step, lane, H * W, d, REVERSE=reverse, BLOCK=BLOCK
            )
    return out


class _RescanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        x, w, b = x.float().contiguous(), weight.detach().float().contiguous(), bias.detach().float().contiguous()
        h = _launch("fwd", x, w=w, b=b)
        ctx.save_for_backward(h, w)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):
        h, w = ctx.saved_tensors
        g = _launch("bwd", h, grad_h.float().contiguous(), w=w)  # g_t for every output, per direction
        dx = g.sum(1)
        # dw = sum_{t>0} g_t h_{t-1}, db = sum_{t>0} g_t along each direction's sweep
        prev = torch.zeros_like(h)
        prev[:, 0, :, :-1] = h[:, 0, :, 1:]  # up: previous is the row below
        prev[:, 1, :, :, 1:] = h[:, 1, :, :, :-1]  # right: the column to the left
        prev[:, 2, :, 1:] = h[:, 2, :, :-1]  # down: the row above
        prev[:, 3, :, :, :-1] = h[:, 3, :, :, 1:]  # left: the column to the right
        first = torch.zeros_like(h[:1, :, :1], dtype=torch.bool)
        first[:, 0, :, -1] = True
        first[:, 1, :, :, 0] = True
        first[:, 2, :, 0] = True
        first[:, 3, :, :, -1] = True
        g_rec = g.masked_fill(first, 0.0)
        dw = (g_rec * prev).sum(dim=(0, 3, 4))
        db = g_rec.sum(dim=(0, 3, 4))
        return dx, dw, db


def irnn_rescan_triton(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The authors' design as Triton kernels (CUDA): forward and backward, one lane per output."""
    return _RescanFunction.apply(x, weight, bias)


# --- the race -------------------------------------------------------------------------------------------------
def _time(fn, repeats: int, device) -> float:
    fn()
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def copy_bandwidth(device) -> float:
    """Bytes per second of copying a 256 MB tensor (read + write)."""
    a = torch.empty(64 * 2**20, device=device)
    b = torch.empty_like(a)
    t = _time(lambda: b.copy_(a), 5, device)
    return 2 * a.numel() * 4 / t


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(SIZES))
    args = p.parse_args(argv)
    from src.models.irnn import irnn, resolve_backend

    device = torch.device(args.device)
    design = irnn_rescan_triton if device.type == "cuda" else irnn_rescan_torch
    bw = copy_bandwidth(device)
    rows = []
    for size in args.sizes:
        B, side = SIZES[size]
        x = torch.randn(B, CHANNELS, side, side, device=device, requires_grad=True)
        w = torch.full((4, CHANNELS), 0.2, device=device, requires_grad=True)
        b = torch.empty(4, CHANNELS, device=device).uniform_(-1, 1).requires_grad_()
        g = torch.randn(B, 4, CHANNELS, side, side, device=device)

        def fb(fn):
            return lambda: torch.autograd.grad(fn(x, w, b), (x, w, b), g)

        ours = _time(fb(irnn), args.repeats, device)
        rescan = _time(fb(design), max(1, args.repeats // 4), device)
        floor = 11 * x.numel() * 4 / bw
        rows.append(
            {
                "size": f"B{B} {side}x{side}",
                "backend": resolve_backend("auto", x.detach()),
                "ours_ms": 1e3 * ours,
                "rescan_ms": 1e3 * rescan,
                "floor_ms": 1e3 * floor,
            }
        )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nIRNN forward+backward, 4 directions, C={CHANNELS}, float32, {name}; copy bandwidth {bw / 1e9:.0f} GB/s\n")
    print(
        "| size | ours (backend) ms | authors' design (rescan) ms | floor ms | ours / floor (<= 3) | "
        "rescan / ours (> 1) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} | {r['ours_ms']:.3f} ({r['backend']}) | {r['rescan_ms']:.3f} | {r['floor_ms']:.3f} | "
            f"{r['ours_ms'] / r['floor_ms']:.2f} | {r['rescan_ms'] / r['ours_ms']:.1f} |"
        )
    return rows


if __name__ == "__main__":
    main()
