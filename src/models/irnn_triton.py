"""Triton kernels of the IRNN scan for CUDA tensors (backend "triton" of src/models/irnn.py).

Importing this module needs triton; src/models/irnn.py imports it only for CUDA inputs.
One kernel launch per direction. A sweep runs along an axis of length L of each (b, c) plane;
every program owns BLOCK independent lanes across the other axis and walks the L steps:

* vertical sweeps (up, down): steps are rows (stride W), lanes are columns (stride 1), so each
  step is one coalesced row segment;
* horizontal sweeps (right, left): steps are columns (stride 1), lanes are rows (stride W).

Arithmetic is float32 whatever the storage type (float16 / bfloat16 / float32). The backward
follows the same recurrence as the C and PyTorch backends (see irnn.py) and reads only the
saved outputs h; dw and db are summed per program and reduced with torch afterwards.

Checked against the "naive" backend with TRITON_INTERPRET=1 on CPU; GPU test:
tests/models/test_irnn.py::test_triton_matches_naive_on_cuda (marked gpu).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from src.models.irnn import DIRECTIONS

BLOCK = 32  # lanes per program: one warp


@triton.jit
def _irnn_fwd_kernel(
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
    BORDER_RELU: tl.constexpr,
    BLOCK: tl.constexpr,
):
    plane = tl.program_id(0).to(tl.int64)  # b * C + c
    bi = plane // C
    c = plane % C
    lanes = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = lanes < M
    offs = lanes.to(tl.int64) * lane_stride
    x_base = x_ptr + plane * plane_size + offs
    o_base = out_ptr + ((bi * 4 + d) * C + c) * plane_size + offs
    w = tl.load(w_ptr + d * C + c).to(tl.float32)
    b = tl.load(b_ptr + d * C + c).to(tl.float32)

    if REVERSE:
        t = L - 1
    else:
        t = 0
    xv = tl.load(x_base + t * step_stride, mask=mask, other=0.0).to(tl.float32)
    if BORDER_RELU:  # first element: no bias, no recurrence
        h = tl.maximum(xv, 0.0)
    else:
        h = xv
    tl.store(o_base + t * step_stride, h.to(out_ptr.dtype.element_ty), mask=mask)
    for n in range(1, L):
        if REVERSE:
            t = L - 1 - n
        else:
            t = n
        xv = tl.load(x_base + t * step_stride, mask=mask, other=0.0).to(tl.float32)
        h = tl.maximum(w * h + b + xv, 0.0)
        tl.store(o_base + t * step_stride, h.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _irnn_bwd_kernel(
    h_ptr,
    gh_ptr,
    dx_ptr,
    w_ptr,
    dw_part_ptr,
    db_part_ptr,
    C,
    L,
    M,
    step_stride,
    lane_stride,
    plane_size,
    d,
    n_lane_blocks,
    REVERSE: tl.constexpr,
    BORDER_RELU: tl.constexpr,
    BLOCK: tl.constexpr,
):
    plane = tl.program_id(0).to(tl.int64)
    bi = plane // C
    c = plane % C
    lanes = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = lanes < M
    offs = lanes.to(tl.int64) * lane_stride
    hd_off = ((bi * 4 + d) * C + c) * plane_size + offs
    h_base = h_ptr + hd_off
    gh_base = gh_ptr + hd_off
    dx_base = dx_ptr + plane * plane_size + offs
    w = tl.load(w_ptr + d * C + c).to(tl.float32)

    g = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_w = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK,), dtype=tl.float32)
    # walk the sweep backwards; the sweep's first position (no predecessor) comes last
    for n in range(0, L):
        if REVERSE:  # forward ran t = L-1 .. 0, predecessor of t is t + 1
            t = n
            prev = t + 1
        else:  # forward ran t = 0 .. L-1, predecessor of t is t - 1
            t = L - 1 - n
            prev = t - 1
        has_prev = (lanes * 0 + n) < L - 1  # per lane, so it combines with mask
        hv = tl.load(h_base + t * step_stride, mask=mask, other=0.0).to(tl.float32)
        gv = tl.load(gh_base + t * step_stride, mask=mask, other=0.0).to(tl.float32)
        if BORDER_RELU:
            g = tl.where(hv > 0.0, gv + w * g, 0.0)
        else:  # the sweep's first position (n = L - 1) has no ReLU
            g = tl.where((hv > 0.0) | (lanes * 0 + n == L - 1), gv + w * g, 0.0)
        dxv = tl.load(dx_base + t * step_stride, mask=mask, other=0.0)
        tl.store(dx_base + t * step_stride, dxv + g, mask=mask)
        hp = tl.load(h_base + prev * step_stride, mask=mask & has_prev, other=0.0).to(tl.float32)
        acc_w += tl.where(has_prev, g * hp, 0.0)
        acc_b += tl.where(has_prev, g, 0.0)

    part = (d * tl.num_programs(0) + plane) * n_lane_blocks + tl.program_id(1)
    tl.store(dw_part_ptr + part, tl.sum(acc_w, axis=0))
    tl.store(db_part_ptr + part, tl.sum(acc_b, axis=0))


def _geometry(vertical: bool, H: int, W: int):
    """(L, M, step_stride, lane_stride) of a sweep over an (H, W) plane."""
    return (H, W, W, 1) if vertical else (W, H, 1, W)


def irnn_forward_triton(x: Tensor, w: Tensor, b: Tensor, border_relu: bool = True) -> Tensor:
    """x (B, C, H, W) contiguous CUDA tensor; w, b (4, C) -> h (B, 4, C, H, W).
    ``border_relu``: h_0 = relu(x_0) (True) or x_0 (False)."""
    B, C, H, W = x.shape
    out = torch.empty((B, 4, C, H, W), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    for d, direction in enumerate(DIRECTIONS):
        L, M, step, lane = _geometry(direction.vertical, H, W)
        grid = (B * C, triton.cdiv(M, BLOCK))
        _irnn_fwd_kernel[grid](
            x,
            out,
            w,
            b,
            C,
            L,
            M,
            step,
            lane,
            H * W,
            d,
            REVERSE=direction.reverse,
            BORDER_RELU=bool(border_relu),
            BLOCK=BLOCK,
            num_warps=1,
        )
    return out


def irnn_backward_triton(h: Tensor, grad_h: Tensor, w: Tensor, border_relu: bool = True):
    """h, grad_h (B, 4, C, H, W) contiguous; w (4, C) -> dx (B, C, H, W), dw (4, C), db (4, C)."""
    B, _, C, H, W = h.shape
    dx = torch.zeros((B, C, H, W), dtype=torch.float32, device=h.device)
    n_blocks = max(triton.cdiv(H, BLOCK), triton.cdiv(W, BLOCK))
    dw_part = torch.zeros((4, B * C, n_blocks), dtype=torch.float32, device=h.device)
    db_part = torch.zeros_like(dw_part)
    if h.numel():
        for d, direction in enumerate(DIRECTIONS):
            L, M, step, lane = _geometry(direction.vertical, H, W)
            grid = (B * C, triton.cdiv(M, BLOCK))
            _irnn_bwd_kernel[grid](
                h,
                grad_h,
                dx,
                w,
                dw_part,
                db_part,
                C,
                L,
                M,
                step,
                lane,
                H * W,
                d,
                n_blocks,
                REVERSE=direction.reverse,
                BORDER_RELU=bool(border_relu),
                BLOCK=BLOCK,
                num_warps=1,
            )
    dw = dw_part.view(4, B, C, n_blocks).sum((1, 3)).to(w.dtype)
    db = db_part.view(4, B, C, n_blocks).sum((1, 3)).to(w.dtype)
    return dx.to(h.dtype), dw, db
