"""DID-MDN, Zhang & Patel, "Density-aware single image de-raining using a multi-stream dense network"
(CVPR 2018): the derain generator ``Dense_rain`` of the authors' PyTorch code (models/derain_dense.py) and
an optional rain-density classifier (``vgg19ca``); docs/models.md.

Image convention: ``forward(x, label)`` takes ``x`` of shape (B, 3, H, W), RGB, values in [0, 1]. The
network works in [-1, 1] as the release does: the input is mapped by ``2x - 1`` inside and the output back by
``(y + 1) / 2``, so ``out`` is on the [0, 1] scale (bounded by the final tanh, not clamped). Any B, H, W: the
network owns its size constraint. Its deepest stream halves the size 3 times, so H and W must be multiples of
8, and its largest pyramid pool is 32 wide, so they must be at least 32; other sizes are reflect-padded on the
bottom/right to the nearest size that fits (:func:`padded_size`) and the outputs cropped back. Sizes that fit
run unpadded, exactly as the release runs them (it accepts batch 1, square images with a side divisible by 8;
padding such a side further, e.g. 40 to 64, changes the output by ~0.2, because the pyramid pools and the
BatchNorm statistics see the padding).

Density label: ``label`` (B,) int64, 0 heavy, 1 medium, 2 light, or -1 / None for unknown. Each sample gets
its own 8-channel label map filled with its label value (0., 1. or 2., as the release trains). Unknown labels
become ``default_label`` or, if ``use_classifier``, the classifier's prediction.

Generator structure::

    three dense encoder-decoder streams with kernel 3, 5, 7 (dense0, dense1, dense2), each -> 12 channels:
        6 dense blocks (BN-ReLU-conv1x1 in->4g-BN-ReLU-convKxK 4g->g, concatenated to the input), each followed
        by a transition (BN-ReLU-1x1 transposed conv, then 2x average pool / nothing / 2x nearest upsampling);
        skips cat(block4, block2 output) and cat(block5, block1 output); output cat(x6 (4 ch), 5 x the same
        side map LeakyReLU(conv3x3(block-1 output)) upsampled (a release quirk: all five use conv11), x (3 ch))
    x9 = LeakyReLU(conv3x3 47->47 (cat(stream3, x, stream5, stream7, label map (8 ch))))
    pyramid: avg pools 32, 16, 8, 4 -> conv1x1 47->2 -> LeakyReLU -> nearest upsampling -> 8 channels
    residual = tanh(conv3x3 55->3 (cat(pyramid, x9)));  clean = x - residual
    out = tanh(conv3x3 8->3 (LeakyReLU(conv7x7 3->8 (clean))))

LeakyReLU slope 0.2 everywhere, convs of the dense/transition blocks without bias. 365,236 parameters; the
released module also holds 7,603 parameters in layers its forward never calls (``RELEASE_UNUSED_LAYERS``),
372,839 in all. They are left out here (unused parameters break DistributedDataParallel);
:meth:`DIDMDN.convert_release_state_dict` skips them when loading a released ``netG`` file's state dict
(``model.init_from=PATH`` does that for a released generator file; see docs/models.md).

BatchNorm: the authors train with batch 1 and tell users to test in train mode (README: "use netG.train()
for testing"), i.e. with the statistics of the image itself. ``bn_batch_stats=True`` (default) does that in
both modes (``track_running_stats=False``); ``False`` gives ordinary running-statistics BatchNorm.

Classifier (optional, off by default): VGG19-BN's first conv-BN-ReLU, conv3x3 64->24, ReLU, 7x7 average pool,
Linear(24*73*73 = 127,896 -> 512), ReLU, Linear(512 -> 4); 65.5M parameters. It needs 512 x 512 inputs, so its
input is resized bilinearly to 512 x 512. The release initialises the first layer from ImageNet; nothing can be
downloaded here, so it starts from random weights. The release feeds it ``x - residual`` with the residual from
a separately trained residual network; here the residual comes from this generator run with
``default_label`` (no gradient), so no second network has to be trained. Its 4 logits are trained with labels
0..2 (the 4th class never occurs) and the prediction is the argmax of the first three. (The release's test
script adds 1 to the argmax before feeding the generator, which was trained with 0..2; not reproduced.)
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: H and W must be multiples of this (the deepest stream downsamples 3 times) ...
SIZE_MULTIPLE = 8
#: ... and at least this (the largest pyramid pool)
MIN_SIZE = 32

#: Layers of the released ``Dense_rain`` that its forward never uses: name -> (in, out, kernel) of a conv,
#: or (channels,) of a BatchNorm. 7,603 parameters in all.
RELEASE_UNUSED_LAYERS: dict[str, tuple[int, ...]] = {
    "batchnorm20": (20,),
    "batchnorm1": (1,),
    **{f"dense0.conv{i}1": (c, 1, 3) for i, c in zip(range(2, 7), (12, 12, 24, 8, 8))},
    **{
        f"{s}.{name}": shape
        for s in ("dense1", "dense2")
        for name, shape in {
            **{f"conv{i}1": (c, 1, 3) for i, c in zip(range(2, 7), (16, 16, 32, 16, 8))},
            "conv_refin": (11, 20, 3),
            "refine3": (24, 3, 3),
            "batchnorm20": (20,),
            "batchnorm1": (1,),
        }.items()
    },
}

#: The three streams: kernel, growth of the 6 dense blocks, output channels and resampling of the 6 transitions.
STREAMS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...], tuple[str, ...]]] = {
    "dense0": (3, (5, 8, 4, 4, 8, 8), (4, 12, 12, 12, 4, 4), ("down", "same", "same", "same", "same", "up")),
    "dense1": (5, (13, 16, 16, 16, 8, 8), (8, 16, 16, 16, 8, 4), ("down", "down", "same", "same", "up", "up")),
    "dense2": (7, (13, 16, 16, 16, 8, 8), (8, 16, 16, 16, 8, 4), ("down", "down", "down", "up", "up", "up")),
}

LABEL_NAMES = ("heavy", "medium", "light")


def padded_size(n: int) -> int:
    """The smallest side >= n that the generator accepts: a multiple of 8, at least 32."""
    return max(MIN_SIZE, -(-n // SIZE_MULTIPLE) * SIZE_MULTIPLE)


def pad_to_fit(x: Tensor) -> Tensor:
    """Pad (B, C, H, W) on the bottom/right to ``padded_size`` of H and W: reflect, or replicate where the
    image is too small to reflect (reflection needs pad < size). Unchanged when it already fits."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h) - h, padded_size(w) - w
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


class BottleneckBlock(nn.Module):
    """DenseNet bottleneck: ``cat(x, convK(relu(bn2(conv1x1(relu(bn1(x)))))))``; in -> in + growth channels."""

    def __init__(self, cin: int, growth: int, kernel: int, track_stats: bool) -> None:
        super().__init__()
        mid = 4 * growth
        self.bn1 = nn.BatchNorm2d(cin, track_running_stats=track_stats)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, track_running_stats=track_stats)
        self.conv2 = nn.Conv2d(mid, growth, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class TransitionBlock(nn.Module):
    """BN-ReLU-1x1 transposed conv (no bias), then 2x average pool ('down'), nothing ('same') or 2x nearest
    upsampling ('up')."""

    def __init__(self, cin: int, cout: int, resample: str, track_stats: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, track_running_stats=track_stats)
        self.conv1 = nn.ConvTranspose2d(cin, cout, 1, bias=False)
        self.resample = resample

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        if self.resample == "down":
            return F.avg_pool2d(out, 2)
        if self.resample == "up":
            return F.interpolate(out, scale_factor=2, mode="nearest")
        return out


class DenseStream(nn.Module):
    """One encoder-decoder stream (the release's Dense_base_down0/1/2); (B, 3, H, W) -> (B, 12, H, W).

    H and W must be multiples of the stream's total downsampling (2, 4 or 8)."""

    def __init__(self, kernel: int, growth: tuple, trans_out: tuple, resample: tuple, track_stats: bool) -> None:
        super().__init__()
        t = trans_out
        block_in = (3, t[0], t[1], t[2], t[3] + t[1], t[4] + t[0])
        for i in range(6):
            self.add_module(f"dense_block{i + 1}", BottleneckBlock(block_in[i], growth[i], kernel, track_stats))
            self.add_module(
                f"trans_block{i + 1}", TransitionBlock(block_in[i] + growth[i], t[i], resample[i], track_stats)
            )
        self.conv11 = nn.Conv2d(t[0], 1, 3, padding=1)

    def _step(self, i: int, x: Tensor) -> Tensor:
        return getattr(self, f"trans_block{i}")(getattr(self, f"dense_block{i}")(x))

    def forward(self, x: Tensor) -> Tensor:
        x1 = self._step(1, x)
        x2 = self._step(2, x1)
        x3 = self._step(3, x2)
        x4 = torch.cat([self._step(4, x3), x2], dim=1)
        x5 = torch.cat([self._step(5, x4), x1], dim=1)
        x6 = self._step(6, x5)
        side = F.interpolate(F.leaky_relu(self.conv11(x1), 0.2), size=x6.shape[-2:], mode="nearest")
        return torch.cat([x6, side.expand(-1, 5, -1, -1), x], dim=1)


class DensityClassifier(nn.Module):
    """Rain-density classifier of the release (``vgg19ca``): (B, 3, H, W) in [-1, 1] -> (B, 4) logits.

    The input is resized to 512 x 512 (bilinear) because the first Linear layer expects 24 x 73 x 73 features.
    ``feature`` is VGG19-BN's first conv-BN-ReLU, randomly initialised here (no ImageNet download)."""

    input_size: int = 512

    def __init__(self) -> None:
        super().__init__()
        self.feature = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.conv16 = nn.Conv2d(64, 24, 3, padding=1)
        side = self.input_size // 7
        self.dense_classifier = nn.Linear(24 * side * side, 512)
        self.dense_classifier1 = nn.Linear(512, 4)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        out = F.relu(self.conv16(self.feature(x)))
        out = F.avg_pool2d(out, 7).flatten(1)
        return self.dense_classifier1(F.relu(self.dense_classifier(out)))


class DIDMDN(nn.Module):
    """Density-aware multi-stream dense derain generator. See the module docstring.

    Args:
        default_label: label used for samples whose label is unknown (-1 / None) when there is no classifier:
            0 heavy, 1 medium, 2 light.
        use_classifier: build the optional density classifier and let it predict unknown labels.
        bn_batch_stats: BatchNorm always normalises with the current batch's statistics (see module docstring).
        label_channels: channels of the label map (8).

    ``forward(x, label=None)`` returns::

        out             (B, 3, H, W) derained image, [0, 1] scale
        residual        (B, 3, H, W) estimated rain residual x - clean_coarse, on the [0, 1] scale
        label           (B,) int64, the labels actually used
        density_logits  (B, 4), only with the classifier
        vis             {"residual": residual clamped to [0, 1]}
    """

    uses_label: bool = True

    def __init__(
        self,
        default_label: int = 0,
        use_classifier: bool = False,
        bn_batch_stats: bool = True,
        label_channels: int = 8,
    ) -> None:
        super().__init__()
        if default_label not in (0, 1, 2):
            raise ValueError(f"model.net.default_label must be 0 (heavy), 1 (medium) or 2 (light), got {default_label}")
        self.default_label = int(default_label)
        self.label_channels = int(label_channels)
        self.bn_batch_stats = bool(bn_batch_stats)
        track = not self.bn_batch_stats
        for name, (kernel, growth, trans_out, resample) in STREAMS.items():
            self.add_module(name, DenseStream(kernel, growth, trans_out, resample, track))
        width = 3 * 12 + 3 + self.label_channels  # 47
        self.conv_refin = nn.Conv2d(width, width, 3, padding=1)
        self.pool_sizes = (32, 16, 8, 4)
        for i in range(1, 5):
            self.add_module(f"conv10{i}0", nn.Conv2d(width, 2, 1))
        self.refine3 = nn.Conv2d(width + 8, 3, 3, padding=1)
        self.refineclean1 = nn.Conv2d(3, 8, 7, padding=3)
        self.refineclean2 = nn.Conv2d(8, 3, 3, padding=1)
        self.classifier = DensityClassifier() if use_classifier else None

    # --- the generator, on [-1, 1] images whose H, W fit (multiples of 8, at least 32) -------------------
    def _generate(self, x: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = x.shape
        label_map = label.to(x.dtype).view(b, 1, 1, 1).expand(b, self.label_channels, h, w)
        feats = torch.cat([self.dense0(x), x, self.dense1(x), self.dense2(x), label_map], dim=1)
        x9 = F.leaky_relu(self.conv_refin(feats), 0.2)
        pyramid = [
            F.interpolate(
                F.leaky_relu(getattr(self, f"conv10{i + 1}0")(F.avg_pool2d(x9, k)), 0.2), size=(h, w), mode="nearest"
            )
            for i, k in enumerate(self.pool_sizes)
        ]
        residual = torch.tanh(self.refine3(torch.cat([*pyramid, x9], dim=1)))
        clean = x - residual
        out = torch.tanh(self.refineclean2(F.leaky_relu(self.refineclean1(clean), 0.2)))
        return residual, out

    def _check_labels(self, label, batch: int, device: torch.device) -> Tensor:
        if label is None:
            return torch.full((batch,), -1, dtype=torch.long, device=device)
        label = torch.as_tensor(label, device=device).long().reshape(-1)
        if label.numel() == 1 and batch > 1:
            label = label.expand(batch)
        if label.numel() != batch:
            raise ValueError(f"DIDMDN: got {label.numel()} labels for a batch of {batch} images")
        if ((label < -1) | (label > 2)).any():
            raise ValueError(
                f"DIDMDN: density labels must be -1 (unknown), 0 (heavy), 1 (medium) or 2 (light), got {label.tolist()}"
            )
        return label

    def forward(self, x: Tensor, label: Tensor | int | None = None) -> dict:
        b, _, h, w = x.shape
        label = self._check_labels(label, b, x.device)
        xn = pad_to_fit(x) * 2 - 1
        result: dict = {}
        default = torch.full_like(label, self.default_label)
        if self.classifier is not None:
            with torch.no_grad():
                coarse_residual, _ = self._generate(xn, default)
            logits = self.classifier(xn - coarse_residual)
            result["density_logits"] = logits
            default = logits[:, :3].argmax(dim=1).detach()
        label = torch.where(label < 0, default, label)
        residual, out = self._generate(xn, label)
        residual = residual[..., :h, :w] / 2  # [-1, 1] units -> [0, 1] units
        result.update(
            out=(out[..., :h, :w] + 1) / 2,
            residual=residual,
            label=label,
            vis={"residual": residual.clamp(0, 1)},
        )
        return result

    # --- the authors' released weights ------------------------------------------------------------------
    def convert_release_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A released ``Dense_rain`` state dict (e.g. ``netG_epoch_9.pth``, saved by their training script with
        ``torch.save(netG.state_dict())``) in this network's naming, checked strictly.

        The names are the same; a ``module.`` prefix (DataParallel) is stripped, keys of
        ``RELEASE_UNUSED_LAYERS`` are dropped, and so are BatchNorm running statistics when ``bn_batch_stats``
        is on. An unexpected or missing key raises ``KeyError`` naming it; a wrong shape ``ValueError``. The
        classifier (released separately as ``vgg19ca``) loads with ``model.classifier.load_state_dict``.
        """
        own = self.state_dict()
        kept: dict[str, Tensor] = {}
        for key, value in state_dict.items():
            key = key.removeprefix("module.")
            layer = key.rsplit(".", 1)[0]
            if layer in RELEASE_UNUSED_LAYERS:
                continue
            if key in own:
                if tuple(value.shape) != tuple(own[key].shape):
                    raise ValueError(
                        f"DIDMDN release weights: {key!r} has shape {tuple(value.shape)}, the network "
                        f"expects {tuple(own[key].shape)}"
                    )
                kept[key] = value
            elif not (self.bn_batch_stats and key.endswith((".running_mean", ".running_var", ".num_batches_tracked"))):
                raise KeyError(f"DIDMDN release weights: unexpected key {key!r}")
        optional = ("classifier.", "num_batches_tracked")  # classifier: released separately; counter: 0.3 had none
        missing = [k for k in own if k not in kept and not any(o in k for o in optional)]
        if missing:
            raise KeyError(f"DIDMDN release weights: missing keys {missing[:5]} ({len(missing)} in all)")
        return kept

    def load_release_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a released ``Dense_rain`` state dict (see :meth:`convert_release_state_dict`)."""
        self.load_state_dict(self.convert_release_state_dict(state_dict), strict=False)

    @staticmethod
    def is_release_state_dict(state_dict: Mapping[str, Tensor]) -> bool:
        """Whether a state dict is the authors' generator file: it holds their never-called layers."""
        return any(k.removeprefix("module.").rsplit(".", 1)[0] in RELEASE_UNUSED_LAYERS for k in state_dict)
