"""``ProtocolMetrics``: a torchmetrics ``Metric`` keeping per-image scores of every protocol.

Usage in a LightningModule (one instance per split, e.g. ``self.val_metrics = ProtocolMetrics()``)::

    out = self.net(batch["rain"])["out"]
    self.val_metrics.update(out, batch["clean"], batch["name"])
    ...
    # on_validation_epoch_end
    self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute().items()})
    report = self.val_metrics.report()          # JSON-ready dict, see `report()`
    self.val_metrics.reset()

Scores computed elsewhere (a folder-scoring worker, a :class:`ScoreCache` of the rainy input's scores) are
added with ``update(names=..., scores=...)``.

Distributed runs: the score states are lists with ``dist_reduce_fx="cat"``, so ``compute()`` and
``report()`` see the images of every process. Image names are strings, which torchmetrics cannot gather, so
each name is stored as a fixed-width UTF-8 byte row (a uint8 tensor of :data:`NAME_BYTES` columns) in a
``cat`` state too; every rank therefore has the full ``per_image`` table after ``report()`` (the entry point
writes it from rank 0). A ``DistributedSampler`` pads the data set with repeated images so that every rank
gets the same number; such repeats carry the same name, and compute()/report() keep the first occurrence of
each name, so means are over the real data set. Images given without a name are never merged (they are
reported as ``#<index>`` in gathered order).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from src.metrics.protocols import PROTOCOLS, score_all

log = logging.getLogger(__name__)

NAME_BYTES = 256
"""Longest image name (UTF-8 bytes) that ``ProtocolMetrics`` can carry across processes."""

MEASURES = ("psnr", "ssim")


def _key(measure: str, protocol: str) -> str:
    return f"{measure}_{protocol}"


def _encode_names(names: Sequence[str], device: torch.device) -> Tensor:
    rows = torch.zeros(len(names), NAME_BYTES, dtype=torch.uint8)
    for i, name in enumerate(names):
        raw = str(name).encode("utf-8")
        if len(raw) > NAME_BYTES:
            raise ValueError(f"image name {name!r} is {len(raw)} bytes long; ProtocolMetrics allows {NAME_BYTES}")
        if raw:
            rows[i, : len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return rows.to(device)


def _decode_names(rows: Tensor) -> list[str]:
    return [bytes(r).rstrip(b"\x00").decode("utf-8") for r in rows.cpu().tolist()]


class ProtocolMetrics(Metric):
    """Per-image PSNR and SSIM under every protocol of :mod:`src.metrics.protocols`.

    ``update(pred, target, names)``: pred/target (B, 3, H, W) RGB on the [0, 1] scale (pred unclamped is
    fine: each protocol clips it), names a list of B strings or None.
    ``compute()``: ``{"psnr_spanet", "ssim_spanet", "psnr_y_matlab", "ssim_y_matlab", "psnr_rgb_uint8",
    "ssim_rgb_uint8"}`` -> 0-dim float64 tensors, each the MEAN OVER IMAGES of the per-image scores.
    ``report()``: the JSON schema shared by checkpoint evaluation and folder scoring (see its docstring).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for protocol in PROTOCOLS:
            for measure in MEASURES:
                self.add_state(_key(measure, protocol), default=[], dist_reduce_fx="cat")
        self.add_state("names", default=[], dist_reduce_fx="cat")

    def update(
        self,
        pred: Optional[Tensor] = None,
        target: Optional[Tensor] = None,
        names: Optional[Sequence[str]] = None,
        scores: Optional[dict[str, Tensor]] = None,
    ) -> None:
        """Score a batch: pred/target (B, 3, H, W) RGB [0, 1] scale; names: B strings (or None).

        Or add per-image scores computed elsewhere (a folder-scoring worker, a :class:`ScoreCache`): ``scores``
        maps every key of :meth:`compute` (``"psnr_spanet"``, ...) to a (B,) tensor, and pred/target are None.
        """
        if scores is not None:
            if pred is not None or target is not None:
                raise ValueError("update: give pred and target, or scores, not both")
            missing = {_key(m, p) for p in PROTOCOLS for m in MEASURES} - set(scores)
            if missing:
                raise ValueError(f"update: no scores for {sorted(missing)}")
            self._append(
                lambda protocol, measure: scores[_key(measure, protocol)],
                len(scores[_key(MEASURES[0], PROTOCOLS[0])]),
                names,
            )
            return
        if pred is None or target is None:
            raise ValueError("update: give pred and target (or scores)")
        batch = pred.shape[0]
        if names is not None and (isinstance(names, str) or len(names) != batch):
            raise ValueError(f"names must be a list of {batch} strings (one per image), got {names!r}")
        computed = score_all(pred, target)
        self._append(lambda protocol, measure: computed[protocol][measure], batch, names)

    def update_scores(self, scores: dict[str, Tensor], names: Optional[Sequence[str]] = None) -> None:
        """``update(names=names, scores=scores)``: add per-image scores computed elsewhere."""
        self.update(names=names, scores=scores)

    def _append(self, get: Any, batch: int, names: Optional[Sequence[str]]) -> None:
        if names is None:
            names = [""] * batch
        elif isinstance(names, str) or len(names) != batch:
            raise ValueError(f"names must be a list of {batch} strings (one per image), got {names!r}")
        for protocol in PROTOCOLS:
            for measure in MEASURES:
                values = get(protocol, measure)
                if values.shape != (batch,):
                    raise ValueError(f"{_key(measure, protocol)}: expected {batch} scores, got {tuple(values.shape)}")
                getattr(self, _key(measure, protocol)).append(values.to(self.device, torch.float64))
        self.names.append(_encode_names(list(names), self.device))

    # --- reading the states -----------------------------------------------------------------------------

    def _per_image(self) -> tuple[list[str], dict[str, Tensor]]:
        """Names and (N,) float64 score tensors of the (already gathered) states, repeats of a name dropped."""
        if len(self.names) == 0:  # a list locally, a tensor after a distributed gather
            raise RuntimeError("ProtocolMetrics has no images: update() was never called (or reset() since)")

        def cat(state: Any) -> Tensor:  # a list of tensors locally, one tensor after a distributed gather
            return torch.cat(state) if isinstance(state, list) else state

        names = _decode_names(cat(self.names))
        scores = {_key(m, p): cat(getattr(self, _key(m, p))).to(torch.float64) for p in PROTOCOLS for m in MEASURES}
        keep, seen = [], set()
        for i, name in enumerate(names):
            if not name:
                names[i] = f"#{i}"
            elif name in seen:
                continue
            seen.add(name)
            keep.append(i)
        if len(keep) < len(names):
            log.debug("ProtocolMetrics: %d repeated image names dropped", len(names) - len(keep))
            index = torch.tensor(keep, device=next(iter(scores.values())).device)
            names = [names[i] for i in keep]
            scores = {k: v[index] for k, v in scores.items()}
        return names, scores

    def compute(self) -> dict[str, Tensor]:
        """Means over images: ``{"psnr_spanet": x, "ssim_spanet": y, ...}`` (0-dim float64 tensors)."""
        _, scores = self._per_image()
        return {key: values.mean() for key, values in scores.items()}

    def report(self) -> dict[str, Any]:
        """The evaluation report (plain JSON types), gathered over all processes::

            {"n_images": N,
             "mean": {"spanet": {"psnr": x, "ssim": y}, "y_matlab": {...}, "rgb_uint8": {...}},
             "per_image": {"<name>": {"spanet": {"psnr": .., "ssim": ..}, "y_matlab": {...}, ...}, ...}}

        Means are over images (per-image scores averaged). PSNR in dB (capped at 100), SSIM unitless.
        """
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync):
            names, scores = self._per_image()
            as_lists = {key: values.cpu().tolist() for key, values in scores.items()}
        return build_report(names, as_lists)


class ScoreCache:
    """Per-image scores of pairs that do not change between evaluations, computed once.

    The rainy input of a validation set is scored against its clean image at every validation although
    neither changes; ``cache(pred, target, names)`` returns the scores (``{"psnr_spanet": (B,) float64, ...}``
    on pred's device, as :meth:`ProtocolMetrics.update_scores` takes them) and computes only the images it
    has not seen. An image is recognised by its name and a fingerprint of both tensors (shape, sum and sum of
    squares of each), so a changed image under a known name (another data set, another crop) is scored
    again. Unnamed images are always scored.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, list[float]]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, pred: Tensor, target: Tensor, names: Optional[Sequence[str]]) -> dict[str, Tensor]:
        batch = pred.shape[0]
        names = [""] * batch if names is None else [str(n) for n in names]
        keys = [_key(m, p) for p in PROTOCOLS for m in MEASURES]
        prints = _fingerprints(pred, target)
        rows: list[Optional[list[float]]] = []
        for name, fp in zip(names, prints):
            entry = self._entries.get(name) if name else None
            rows.append(entry[1] if entry is not None and entry[0] == fp else None)
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            index = torch.tensor(todo, device=pred.device)
            scores = score_all(pred.index_select(0, index), target.index_select(0, index))
            fresh = torch.stack([scores[p][m] for p in PROTOCOLS for m in MEASURES], dim=1).cpu().tolist()
            for i, row in zip(todo, fresh):
                rows[i] = row
                if names[i]:
                    self._entries[names[i]] = (prints[i], row)
        self.misses += len(todo)
        self.hits += batch - len(todo)
        table = torch.tensor(rows, dtype=torch.float64, device=pred.device)
        return {key: table[:, j] for j, key in enumerate(keys)}


def _fingerprints(pred: Tensor, target: Tensor) -> list[tuple]:
    """Per image: (shape, sum and sum of squares of pred and of target), as Python floats."""
    sums = []
    for t in (pred, target):
        flat = t.detach().flatten(1).to(torch.float64)
        sums += [flat.sum(dim=1), flat.pow(2).sum(dim=1)]
    values = torch.stack(sums, dim=1).cpu().tolist()
    return [(tuple(pred.shape[1:]), *row) for row in values]


def build_report(names: Sequence[str], scores: dict[str, Sequence[float]]) -> dict[str, Any]:
    """Report dict (see :meth:`ProtocolMetrics.report`) from names and flat per-image lists keyed
    ``"<measure>_<protocol>"`` (e.g. ``"psnr_spanet"``)."""
    n = len(names)
    per_image = {
        name: {p: {m: float(scores[_key(m, p)][i]) for m in MEASURES} for p in PROTOCOLS}
        for i, name in enumerate(names)
    }
    mean = {p: {m: math.fsum(scores[_key(m, p)]) / n for m in MEASURES} for p in PROTOCOLS}
    return {"n_images": n, "mean": mean, "per_image": per_image}


def flat_means(report: dict[str, Any]) -> dict[str, float]:
    """``{"psnr_spanet": x, ...}`` from a report's ``mean`` block (the keys ``compute()`` returns)."""
    return {_key(m, p): float(report["mean"][p][m]) for p in report["mean"] for m in report["mean"][p]}
