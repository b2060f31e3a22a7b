"""Named evaluation protocols (``spanet``, ``y_matlab``, ``rgb_uint8``), their torchmetrics wrapper, folder
scoring and the paper's reference numbers. See docs in :mod:`src.metrics.protocols`."""

from src.metrics.folder import format_table, score_folders
from src.metrics.metric import ProtocolMetrics, ScoreCache, build_report, flat_means
from src.metrics.protocols import (
    PROTOCOL_SUMMARY,
    PROTOCOLS,
    PSNR_CAP_DB,
    psnr_rgb_uint8,
    psnr_spanet,
    psnr_y_matlab,
    rgb_to_y_matlab,
    score_all,
    ssim_rgb_uint8,
    ssim_spanet,
    ssim_y_matlab,
    to_uint8_levels,
)

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_SUMMARY",
    "PSNR_CAP_DB",
    "ProtocolMetrics",
    "ScoreCache",
    "build_report",
    "flat_means",
    "format_table",
    "psnr_rgb_uint8",
    "psnr_spanet",
    "psnr_y_matlab",
    "rgb_to_y_matlab",
    "score_all",
    "score_folders",
    "ssim_rgb_uint8",
    "ssim_spanet",
    "ssim_y_matlab",
    "to_uint8_levels",
]
