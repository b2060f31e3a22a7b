"""SPANet training loss (paper eq. 6-7): ``L1(P, C) + (1 - SSIM(P, C)) + MSE(A_1, M)``.

P: the network output ``outputs["out"]`` (B, 3, H, W), unclamped; C: ``batch["clean"]``; A_1: the first SAM
map ``outputs["att"][0]`` (B, 1, H, W); M: the binary rain mask computed from ``batch["rain"]`` and
``batch["clean"]`` (RGB in [0, 1]) by :func:`rain_mask`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel2d
from torch import Tensor, nn

from src.metrics.protocols import to_uint8_levels

MASK_RULES = ("abs", "positive")


def gaussian_window(window_size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised 2-D Gaussian window, shape (1, 1, window_size, window_size)."""
    return get_gaussian_kernel2d((window_size, window_size), (sigma, sigma), dtype=dtype).unsqueeze(0)


def ssim_zero_pad(pred: Tensor, target: Tensor, window: Tensor | None = None, data_range: float = 1.0) -> Tensor:
    """Mean SSIM as computed by the SPANet release (its ``cal_ssim.py``), differentiable.

    pred, target: (B, C, H, W) on the scale ``[0, data_range]`` (pred may leave it; it is not clamped).
    Local statistics use a Gaussian window (default 11x11, sigma 1.5) applied per channel with ZERO padding
    of ``window_size // 2`` ("same" output size), constants ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``; the SSIM map
    is averaged over batch, channels and all pixels (borders included). Returns a scalar tensor.

    Why not a library: ``kornia.metrics.ssim`` pads with 'reflect' (or crops with 'valid') and
    ``torchmetrics``' SSIM pads with 'reflect' and averages the whole map; both give different numbers near the
    image border from the zero padding the release trains with.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"ssim_zero_pad: expected two (B, C, H, W) tensors of equal shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if window is None:
        window = gaussian_window(dtype=pred.dtype)
    channels = pred.shape[1]
    kernel = window.to(pred).expand(channels, 1, *window.shape[-2:])
    pad = window.shape[-1] // 2

    def blur(img: Tensor) -> Tensor:
        return F.conv2d(img, kernel, padding=pad, groups=channels)

    mu1, mu2 = blur(pred), blur(target)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = blur(pred * pred) - mu1_sq
    sigma2_sq = blur(target * target) - mu2_sq
    sigma12 = blur(pred * target) - mu12
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu12 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return ssim_map.mean()


def rain_mask(rain: Tensor, clean: Tensor, threshold: float = 0, rule: str = "abs") -> Tensor:
    """Binary rain map M (B, 1, H, W) float {0, 1} from RGB images (B, 3, H, W) in [0, 1].

    Both images are first quantised to 8-bit levels by the suite's one rule
    (:func:`src.metrics.protocols.to_uint8_levels`, round half up); ``d = rain8 - clean8`` per channel.
    ``rule="abs"``: M = 1 where ``max_c |d| > threshold``; ``rule="positive"``: M = 1 where ``max_c d > threshold``
    (only pixels brighter in the rain image). ``threshold`` is on the 8-bit scale. The default (abs, 0) equals the
    release's ``clip(sum_c uint8(O - B), 0, 1)``: its unsigned wrap-around makes darker rain pixels count too.
    """
    if rule not in MASK_RULES:
        raise ValueError(f"loss.mask_rule: {rule!r} is not one of {MASK_RULES}")
    diff = to_uint8_levels(rain) - to_uint8_levels(clean)
    if rule == "abs":
        diff = diff.abs()
    return (diff.amax(dim=1, keepdim=True) > threshold).to(rain.dtype)


class SPANetLoss(nn.Module):
    """``total = L1 + ssim_weight * (1 - SSIM) + att_weight * MSE(att[0], M)``.

    Args:
        ssim_weight, att_weight: weights of the SSIM and attention terms (1, 1 in the paper).
        attention_loss: False drops the attention term (ablation B_e, and B_a which has no attention map).
        mask_threshold: threshold on 8-bit differences for the rain mask M (0 = any change, as released).
        mask_rule: ``abs`` (|rain - clean|, as released) or ``positive`` (rain - clean), see :func:`rain_mask`.

    ``forward(outputs, batch)`` returns ``(total, {"l1": L1, "ssim": 1 - SSIM, "att": MSE})``, the parts
    unweighted; ``"att"`` only when ``attention_loss``.
    """

    def __init__(
        self,
        ssim_weight: float = 1.0,
        att_weight: float = 1.0,
        attention_loss: bool = True,
        mask_threshold: float = 0,
        mask_rule: str = "abs",
        ssim_window_size: int = 11,
        ssim_sigma: float = 1.5,
    ) -> None:
        super().__init__()
        if mask_rule not in MASK_RULES:
            raise ValueError(f"loss.mask_rule: {mask_rule!r} is not one of {MASK_RULES}")
        if mask_threshold < 0:
            raise ValueError(f"loss.mask_threshold: must be >= 0 (8-bit scale), got {mask_threshold}")
        self.ssim_weight = float(ssim_weight)
        self.att_weight = float(att_weight)
        self.attention_loss = bool(attention_loss)
        self.mask_threshold = float(mask_threshold)
        self.mask_rule = mask_rule
        # float64 master copy, cast to the prediction's dtype in ssim_zero_pad
        self.register_buffer(
            "window", gaussian_window(ssim_window_size, ssim_sigma, dtype=torch.float64), persistent=False
        )

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        pred, clean = outputs["out"], batch["clean"]
        parts = {
            "l1": F.l1_loss(pred, clean),
            "ssim": 1 - ssim_zero_pad(pred, clean, self.window),
        }
        total = parts["l1"] + self.ssim_weight * parts["ssim"]
        if self.attention_loss:
            maps = outputs.get("att") or []
            if not maps:
                raise ValueError(
                    "loss.attention_loss is true but the network returned no attention map "
                    "(outputs['att'] is missing or empty, e.g. variant b_a): set loss.attention_loss=false"
                )
            mask = rain_mask(batch["rain"], clean, self.mask_threshold, self.mask_rule)
            parts["att"] = F.mse_loss(maps[0], mask)
            total = total + self.att_weight * parts["att"]
        return total, parts
