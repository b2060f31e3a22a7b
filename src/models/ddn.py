"""DDN, the deep detail network of Fu et al., "Removing rain from single images via a deep detail network"
(CVPR 2017), as in the authors' TensorFlow code (docs/models.md).

Image convention: ``forward(x)`` takes ``x`` of shape (B, 3, H, W), RGB, values in [0, 1], any H, W >= 1,
and returns ``out`` on the same scale, not clamped.

Structure::

    base   = guided_filter(x, x)   per channel, radius 15 (31x31 box), eps 1, box truncated at the borders
    detail = x - base              the network sees only the high-frequency detail layer
    h = relu(bn(conv3x3 3->16 (detail)))
    12 x  h = h + relu(bn(conv3x3 16->16 (relu(bn(conv3x3 16->16 (h))))))      (no ReLU after the add)
    out = x + bn(conv3x3 16->3 (h))                                            (added to the ORIGINAL image)

26 conv layers with bias, Xavier-uniform weights (TF ``xavier_initializer``), zero biases. BatchNorm uses
TensorFlow's defaults, eps 1e-3 and decay 0.99, i.e. PyTorch ``momentum=0.01``. 57,369 parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from src.models.guided_filter import DetailSplit


class _ConvBN(nn.Sequential):
    """conv3x3 (with bias) + BatchNorm (TF defaults), optionally followed by ReLU."""

    def __init__(self, cin: int, cout: int, relu: bool, bn_eps: float, bn_momentum: float) -> None:
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _ResidualUnit(nn.Module):
    """``h + relu(bn(conv(relu(bn(conv(h))))))``: two conv-BN-ReLU layers around a skip, no ReLU after the add."""

    def __init__(self, channels: int, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _ConvBN(channels, channels, True, bn_eps, bn_momentum),
            _ConvBN(channels, channels, True, bn_eps, bn_momentum),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class DDN(nn.Module):
    """Deep detail network. See the module docstring for the structure.

    Args:
        channels: feature width (16 in the paper).
        num_units: residual units of two conv layers each (12 -> 26 conv layers in all).
        radius: guided-filter box radius (15 -> 31 x 31 window).
        eps: guided-filter regulariser on the [0, 1] scale (1.0 in the authors' code).
        bn_eps, bn_momentum: BatchNorm settings (TensorFlow's 1e-3 and decay 0.99 -> momentum 0.01).

    ``forward(x)`` returns ``{"out": x + residual, "base": base, "detail": detail, "vis": {...}}`` with
    ``out``/``base``/``detail`` (B, 3, H, W); ``vis`` shows the base layer and the detail layer shifted by
    0.5 (both clamped to [0, 1]).
    """

    uses_label: bool = False

    def __init__(
        self,
        channels: int = 16,
        num_units: int = 12,
        radius: int = 15,
        eps: float = 1.0,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.split = DetailSplit(radius, eps)
        self.head = _ConvBN(3, channels, True, bn_eps, bn_momentum)
        self.units = nn.Sequential(*(_ResidualUnit(channels, bn_eps, bn_momentum) for _ in range(num_units)))
        self.tail = _ConvBN(channels, 3, False, bn_eps, bn_momentum)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> dict:
        base, detail, vis = self.split(x)
        out = x + self.tail(self.units(self.head(detail)))
        return {"out": out, "base": base, "detail": detail, "vis": vis}
