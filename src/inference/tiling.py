"""Tiled inference: run a network on overlapping tiles and blend them into one full-size output.

A photo of tens of megapixels does not fit in memory as one forward pass (SPANet keeps several 32-channel
feature maps and four IRNN direction maps per pixel). :func:`tiled_forward` cuts the image into tiles of
``tile`` x ``tile`` pixels that overlap by at least ``overlap`` pixels, runs the network on batches of tiles and
blends the outputs:

* Tile starts are spread evenly along each axis (the last tile ends at the border), so every neighbouring pair
  overlaps by ``overlap`` or more and all tiles have the same size (they batch).
* In the band where two tiles overlap, a linear cross-fade of ``blend`` pixels (default: half the band) is
  centred; outside it each tile has weight 0 on its cut side. With the default a tile only contributes to
  pixels at least a quarter of the overlap away from its cut edges, where the zero padding at the cut has faded.
* Weights are per tile ``w_y(row) * w_x(col)``, normalised by their sum at each pixel.

Pixels outside every overlap band come from one tile alone. They equal whole-image inference when the
network's receptive field is shorter than their distance to the nearest cut (e.g. a freshly initialised
SPANet, see ``tests/inference/test_tiling.py``). The released SPANet weights are not such a network: their IRNN
carries information along whole rows and columns, so tiling changes their output slightly everywhere
(docs/predict.md, README "Performance").

:func:`cached_bytes_per_pixel` (a probe measured once per network, device and code version, kept on disk) and
:func:`free_memory` let :class:`src.inference.engine.Derainer` (``tile=auto``) pick the largest tile that fits the
device's free memory, and :func:`auto_overlap` the overlap measured for the network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor

from src.ops.cbuild import cache_dir
from src.ops.heap import malloc_trim

Forward = Callable[[Tensor], dict]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with neighbours overlapping by >= ``overlap``.

    One tile when ``length <= tile``; otherwise the fewest tiles that satisfy the overlap, spread evenly so that
    the first starts at 0 and the last ends at ``length``.
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and tile_overlap >= 0, got tile={tile}, tile_overlap={overlap}")
    if length <= tile:
        return [0]
    if overlap >= tile:
        raise ValueError(f"tile_overlap={overlap} must be smaller than tile={tile}")
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def axis_weights(length: int, tile: int, starts: list[int], blend: Optional[int] = None) -> list[Tensor]:
    """1-D blending weights (float32, size ``min(tile, length)``) of each tile along one axis; see module doc.

    In each overlap band of width ``band`` the cross-fade is ``blend`` pixels wide (None: ``band // 2``; at most
    ``band``), centred, so each tile contributes only where it has ``(band - blend) / 2`` pixels of context."""
    size = min(tile, length)
    weights = []
    pos = torch.arange(size, dtype=torch.float64) + 0.5
    for i, s in enumerate(starts):
        w = torch.ones(size, dtype=torch.float64)
        for j in (i - 1, i + 1):
            if not 0 <= j < len(starts):
                continue
            lo, hi = max(s, starts[j]), min(s + size, starts[j] + size)  # the overlap band, image coordinates
            band = hi - lo
            if band <= 0:
                continue
            width = max(min(band // 2 if blend is None else blend, band), 1)
            margin = (band - width) / 2
            t = ((pos + s - lo - margin) / width).clamp(0, 1)  # 0 -> 1 across the band, left to right
            w = torch.minimum(w, t if j < i else 1 - t)
        weights.append(w.float())
    return weights


def tiled_forward(
    forward: Forward,
    x: Tensor,
    tile: int,
    overlap: int,
    batch_size: int = 1,
    blend: Optional[int] = None,
    device: Optional[torch.device] = None,
    on_tiles: Optional[Callable[[int], None]] = None,
) -> dict:
    """``forward`` on overlapping tiles of ``x`` (1, 3, H, W), blended into ``{"out": (1,3,H,W), "att": [...]}``.

    ``forward`` takes a (B, 3, h, w) batch on ``device`` and returns the network's dict ("out", optionally
    "att"). ``x`` may stay on the CPU: tiles are moved to ``device`` one batch at a time and the blended
    result is accumulated in float32 on the CPU, so device memory holds one batch of tiles only.
    ``att`` holds the first attention map only (what predict writes). ``on_tiles(n)`` is called after each
    batch with the number of tiles done in it (for a progress bar).
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"tiled_forward expects one image (1, C, H, W), got {tuple(x.shape)}")
    device = device or x.device
    _, _, h, w = x.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    wy, wx = axis_weights(h, tile, ys, blend), axis_weights(w, tile, xs, blend)
    th, tw = min(tile, h), min(tile, w)
    boxes = [(i, j) for i in range(len(ys)) for j in range(len(xs))]

    out = torch.zeros(1, 3, h, w, dtype=torch.float32)
    att: Optional[Tensor] = None
    norm = torch.zeros(1, 1, h, w, dtype=torch.float32)
    for k in range(0, len(boxes), batch_size):
        chunk = boxes[k : k + batch_size]
        batch = torch.cat([x[..., ys[i] : ys[i] + th, xs[j] : xs[j] + tw] for i, j in chunk]).to(device)
        res = forward(batch)
        y = res["out"].float().cpu()
        a = res["att"][0].float().cpu() if res.get("att") else None
        if a is not None and att is None:
            att = torch.zeros(1, 1, h, w, dtype=torch.float32)
        for n, (i, j) in enumerate(chunk):
            wgt = (wy[i][:, None] * wx[j][None, :])[None, None]
            region = (..., slice(ys[i], ys[i] + th), slice(xs[j], xs[j] + tw))
            out[region] += y[n : n + 1] * wgt
            norm[region] += wgt
            if a is not None:
                att[region] += a[n : n + 1] * wgt
        if on_tiles:
            on_tiles(len(chunk))
    if bool((norm <= 0).any()):  # cannot happen with tile_starts' spacing; guards future edits
        raise RuntimeError("tiled_forward: some pixels were covered by no tile with non-zero weight")
    out /= norm
    result = {"out": out, "att": []}
    if att is not None:
        result["att"] = [att / norm]
    return result


# --- the overlap tile=auto uses ---------------------------------------------------------------------------------
#: Per network (class name, or "class:variant"): the smallest tile overlap in pixels at which 256-pixel tiles keep
#: the output within 0.1 dB PSNR of whole-image output against the clean image, measured by
#: experiments/tile_overlap.py on synthetic rain (docs/predict.md, "Tiles and memory": the table, the weights used,
#: and the networks not measured yet, which get DEFAULT_OVERLAP).
MEASURED_OVERLAP: dict[str, int] = {
    # every row: randomly initialised networks (no trained weights ship for them), a lower bound for trained ones
    "DDN": 16,
    "SPANet:b_a": 16,
    "JORDERE": 16,
    "RESCAN": 16,
    "DIDMDN": 16,
    "Clear": 16,
    "PReNet": 16,
    "NAFNet": 16,
    "Restormer": 16,
    "DRSformerSPA": 16,
    "DRSformer": 16,
    "NeRDRain": 16,
}
#: Networks the table does not know
DEFAULT_OVERLAP = 128


def network_key(net) -> str:
    """The name tile=auto and the memory probe know a network by: its class, and its variant when it has one."""
    variant = getattr(net, "variant", None)
    return f"{type(net).__name__}:{variant}" if variant else type(net).__name__


def auto_overlap(net) -> int:
    """The overlap tile=auto uses for ``net``: :data:`MEASURED_OVERLAP` (by variant, else by class), else
    :data:`DEFAULT_OVERLAP`."""
    return auto_overlap_and_source(net)[0]


def auto_overlap_and_source(net) -> tuple[int, str]:
    """(:func:`auto_overlap`, where it comes from, in words)."""
    key = network_key(net)
    for k in (key, key.split(":")[0]):
        if k in MEASURED_OVERLAP:
            return MEASURED_OVERLAP[k], f"measured for {k} with random weights: tiles within 0.1 dB of whole images"
    return DEFAULT_OVERLAP, f"the default: no overlap measured for {key}"


# --- choosing the tile size from free memory ----------------------------------------------------------------
def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors: CUDA's free device memory, or the system's available RAM on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def _cpu_peak(run: Callable[[], object]) -> Optional[int]:
    """Peak resident memory above the starting point while ``run()`` executes (Linux: VmHWM reset); None elsewhere."""
    clear, status = Path("/proc/self/clear_refs"), Path("/proc/self/status")

    def field(name: str) -> int:
        for line in status.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(name)

    try:
        malloc_trim()
        clear.write_text("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
        base = field("VmRSS")
        run()
        return max(field("VmHWM") - base, 0)
    except (OSError, KeyError, ValueError):
        return None


def _cuda_peak(run: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def cached_bytes_per_pixel(
    forward: Forward, net, device: torch.device, dtype: torch.dtype = torch.float32, cache: Optional[Path] = None
) -> tuple[float, bool]:
    """:func:`bytes_per_pixel`, measured once per network, device, dtype and code version and kept on disk
    (``cache``, default ``<cache_dir()>/memory_probe.json``). Returns (bytes per pixel, whether it was cached)."""
    path = cache or cache_dir() / "memory_probe.json"
    key = probe_key(net, device, dtype)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    if isinstance(table.get(key), (int, float)):
        return float(table[key]), True
    value = bytes_per_pixel(forward, device, dtype)
    table[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    except OSError:
        pass  # a read-only cache only costs a new measurement next time
    return value, False


def probe_key(net, device: torch.device, dtype: torch.dtype) -> str:
    """Cache key of a memory probe: network (class, variant, parameter count), device (and GPU model), dtype,
    torch version, and a hash of the code that sets the cost (src/models, src/ops): editing it re-measures."""
    params = sum(p.numel() for p in net.parameters())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"{network_key(net)}|{params}|{where}|{dtype}|torch {torch.__version__}|{_code_hash()}"


def _code_hash() -> str:
    if "code" not in _CODE_HASH:
        h = hashlib.sha256()
        src = Path(__file__).resolve().parents[1]
        for f in sorted([*src.glob("models/**/*"), *src.glob("ops/**/*")]):
            if f.is_file() and f.suffix in (".py", ".c", ".h"):
                h.update(f.relative_to(src).as_posix().encode() + f.read_bytes())
        _CODE_HASH["code"] = h.hexdigest()[:16]
    return _CODE_HASH["code"]


_CODE_HASH: dict = {}


def bytes_per_pixel(
    forward: Forward, device: torch.device, dtype: torch.dtype = torch.float32, probe: tuple[int, int] = (96, 192)
) -> float:
    """Memory one forward pass needs per input pixel, from the peak at two probe sizes (slope, so fixed costs
    such as the weights cancel). CUDA: the allocator's peak; CPU on Linux: peak resident memory; elsewhere a
    conservative 4 KB per pixel."""
    peaks = []
    for side in probe:
        x = torch.rand(1, 3, side, side, device=device, dtype=dtype)
        run = lambda: forward(x)  # noqa: E731, B023 (called within this iteration)
        run()  # warm-up: lazily built kernels, allocator pools
        peak = _cuda_peak(run, device) if device.type == "cuda" else _cpu_peak(run)
        if peak is None:
            return 4096.0
        peaks.append(peak)
    slope = (peaks[1] - peaks[0]) / (probe[1] ** 2 - probe[0] ** 2)
    whole = peaks[1] / probe[1] ** 2  # the larger probe's cost per pixel, fixed costs included
    return float(max(slope, whole * 0.5, 64.0))
