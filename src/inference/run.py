"""The prediction loops: images (batched by size) and clips (video file or folder of frames).

Every derainer (one per checkpoint) runs on the same inputs. With one derainer, outputs go to ``output/``;
with several, to ``output/<label>/`` and, for images, one ``output/comparison_grid.png`` shows all methods on
all inputs. File names per input ``<stem>`` (clips: the video's stem or the frames folder's name):

====================  =====================================================================================
``<stem>.png``        derained image, 8-bit RGB (clipped to [0, 1], x255, rounded half up)
``<stem>_att.png``    first attention map as a heat map (models with attention)
``<stem>.npy``        ``save_raw=true``: H x W x 3 float32, the unclipped network output
``<stem>_att.npy``    ``save_raw=true``: H x W float32 attention map
``<stem>_compare.png``  ``compare=true``: rain | derained | attention [| ground truth with PSNR / SSIM]
``<clip>.mp4``        derained video, same frame rate and size (``<clip>_att.mp4``: ``video.attention=true``;
                      ``<clip>_compare.mp4``: ``compare=true``)
====================  =====================================================================================
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import imageio.v3 as iio
import numpy as np
import torch
from tqdm.auto import tqdm

from src.inference.engine import Derainer
from src.inference.figures import _resize, compare_figure, comparison_grid, heat_map, to_uint8
from src.inference.outputs import Inputs
from src.inference.video import VideoWriter, iter_video, video_info

log = logging.getLogger(__name__)

GRID_NAME = "comparison_grid.png"
Reader = Callable[[Path], np.ndarray]  # path -> float32 H x W x 3 RGB in [0, 1]


@dataclass
class Job:
    out_dir: Path
    compare: bool = False
    save_raw: bool = False
    protocol: str = "spanet"
    gt: dict = field(default_factory=dict)  # input stem -> ground-truth file
    attention_video: bool = False
    fps: float = 25.0  # for a folder of frames
    codec: str = "libx264"
    grid_cell_width: int = 320
    progress: bool = True


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", label).strip("_") or "model"


def model_dirs(job: Job, derainers: Sequence[Derainer]) -> list[Path]:
    if len(derainers) == 1:
        return [job.out_dir]
    return [job.out_dir / slug(d.label) for d in derainers]


def plan_image_outputs(files: Sequence[Path], derainers: Sequence[Derainer], job: Job) -> list[Path]:
    planned = []
    for d, folder in zip(derainers, model_dirs(job, derainers)):
        for f in files:
            planned.append(folder / f"{f.stem}.png")
            if d.has_attention:
                planned.append(folder / f"{f.stem}_att.png")
            if job.save_raw:
                planned += [folder / f"{f.stem}.npy"] + ([folder / f"{f.stem}_att.npy"] if d.has_attention else [])
            if job.compare:
                planned.append(folder / f"{f.stem}_compare.png")
    if len(derainers) > 1:
        planned.append(job.out_dir / GRID_NAME)
    return planned


def plan_clip_outputs(inputs: Inputs, derainers: Sequence[Derainer], job: Job) -> list[Path]:
    planned = []
    for d, folder in zip(derainers, model_dirs(job, derainers)):
        planned.append(folder / f"{inputs.clip_name}.mp4")
        if job.attention_video and d.has_attention:
            planned.append(folder / f"{inputs.clip_name}_att.mp4")
        if job.compare:
            planned.append(folder / f"{inputs.clip_name}_compare.mp4")
    return planned


def score(protocol: str, pred: np.ndarray, gt: np.ndarray) -> dict:
    """PSNR / SSIM of one H x W x 3 float image against its ground truth under a named protocol."""
    from src.metrics.protocols import PROTOCOL_FUNCTIONS

    psnr_fn, ssim_fn = PROTOCOL_FUNCTIONS[protocol]
    p = torch.from_numpy(np.ascontiguousarray(pred.transpose(2, 0, 1)))[None].double()
    g = torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1)))[None].double()
    return {"psnr": float(psnr_fn(p, g)[0]), "ssim": float(ssim_fn(p, g)[0])}


def _batches_by_size(files: Sequence[Path], size_of: Callable[[Path], Optional[tuple]], batch_size: int):
    """Files grouped by image size (in first-seen order) and cut into batches of at most ``batch_size``."""
    groups: dict = {}
    for k, f in enumerate(files):
        size = size_of(f)
        groups.setdefault(size if size is not None else ("unknown", k), []).append(f)
    for group in groups.values():
        for k in range(0, len(group), batch_size):
            yield group[k:k + batch_size]


def _tile_counter(bar) -> Callable[[int], None]:
    """Shows the tiles done of the current image in the progress bar (large images take a while each)."""
    done = [0]

    def update(n: int) -> None:
        done[0] += n
        bar.set_postfix(tiles=done[0], refresh=True)

    return update


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0)


def derain_images(
    files: Sequence[Path], derainers: Sequence[Derainer], job: Job, read: Reader,
    size_of: Callable[[Path], Optional[tuple]], batch_size: int,
) -> tuple[list[Path], list[str]]:
    """Derain image files; returns (written files, "path: reason" of every unreadable input)."""
    folders = model_dirs(job, derainers)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    failed: list[str] = []
    grid_rows = []
    bar = tqdm(total=len(files) * len(derainers), unit="img", disable=not job.progress, desc="derain")
    try:
        for batch_files in _batches_by_size(files, size_of, batch_size):
            images, names = [], []
            for f in batch_files:
                try:
                    images.append(read(f))
                    names.append(f)
                except OSError as e:  # ImageReadError, FileNotFoundError, PermissionError
                    msg = str(e) if str(f) in str(e) else f"{f}: {e}"
                    log.warning("skipped unreadable input %s", msg)
                    failed.append(msg)
                    bar.update(len(derainers))
            if not images:
                continue
            if len({im.shape for im in images}) > 1:  # sizes from headers disagreed with the decoded pixels
                parts = [[im] for im in images]
            else:
                parts = [images]
            gts = [_read_gt(job, f, im, read) for f, im in zip(names, images)]
            results = {id(d): [] for d in derainers}
            for part in parts:
                x = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in part]))
                for d in derainers:
                    res = d.derain(x, on_tiles=_tile_counter(bar))
                    for k in range(x.shape[0]):
                        results[id(d)].append((_hwc(res["out"][k]),
                                               res["att"][k, 0].numpy() if res["att"] is not None else None))
            for d, folder in zip(derainers, folders):
                for f, im, gt, (y, a) in zip(names, images, gts, results[id(d)]):
                    written += _write_image_outputs(folder, f.stem, im, y, a, gt, job, d.label)
                    bar.update(1)
            if len(derainers) > 1:
                for f, im, gt in zip(names, images, gts):
                    cells = [("Rain", _resize(to_uint8(im), job.grid_cell_width),
                              score(job.protocol, im, gt) if gt is not None else None)]
                    for d in derainers:
                        y = next(y for g, (y, _) in zip(names, results[id(d)]) if g == f)
                        cells.append((d.label, _resize(to_uint8(y), job.grid_cell_width),
                                      score(job.protocol, y, gt) if gt is not None else None))
                    if gt is not None:
                        cells.append(("Ground truth", _resize(to_uint8(gt), job.grid_cell_width), None))
                    grid_rows.append((f.stem, cells))
    finally:
        bar.close()
    if grid_rows:
        grid, _ = comparison_grid(grid_rows, job.grid_cell_width, job.protocol if job.gt else None)
        iio.imwrite(job.out_dir / GRID_NAME, grid)
        written.append(job.out_dir / GRID_NAME)
    return written, failed


def _read_gt(job: Job, f: Path, rain: np.ndarray, read: Reader) -> Optional[np.ndarray]:
    if not job.gt:
        return None
    gt = read(job.gt[f.stem])
    if gt.shape != rain.shape:
        raise ValueError(f"gt {job.gt[f.stem]} is {gt.shape[1]}x{gt.shape[0]}, its input {f} is "
                         f"{rain.shape[1]}x{rain.shape[0]}")
    return gt


def _write_image_outputs(folder: Path, stem: str, rain, y, a, gt, job: Job, label: str) -> list[Path]:
    out = [folder / f"{stem}.png"]
    iio.imwrite(out[0], to_uint8(y))
    if a is not None:
        iio.imwrite(folder / f"{stem}_att.png", heat_map(a))
        out.append(folder / f"{stem}_att.png")
    if job.save_raw:
        np.save(folder / f"{stem}.npy", y.astype(np.float32))
        out.append(folder / f"{stem}.npy")
        if a is not None:
            np.save(folder / f"{stem}_att.npy", a.astype(np.float32))
            out.append(folder / f"{stem}_att.npy")
    if job.compare:
        scores = None
        if gt is not None:
            scores = {"rain": score(job.protocol, rain, gt), "derained": score(job.protocol, y, gt)}
        fig, _ = compare_figure(rain, y, a, gt, scores, job.protocol, title=label)
        iio.imwrite(folder / f"{stem}_compare.png", fig)
        out.append(folder / f"{stem}_compare.png")
    return out


def derain_clip(inputs: Inputs, derainers: Sequence[Derainer], job: Job, read: Reader,
                batch_size: int) -> tuple[list[Path], list[str]]:
    """Derain a video file or a folder of frames into videos of the same frame rate and size."""
    failed: list[str] = []
    if inputs.kind == "video":
        info = video_info(inputs.files[0])
        fps, total = info["fps"], info["frames"]
        frames = iter_video(inputs.files[0])
        source = (f"{inputs.files[0]} frame {k}" for k in range(10 ** 9))
    else:
        fps, total = float(job.fps), len(inputs.files)
        frames, source = _read_frames(inputs.files, read, failed), None
    folders = model_dirs(job, derainers)
    writers = []
    for d, folder in zip(derainers, folders):
        folder.mkdir(parents=True, exist_ok=True)
        w = {"out": VideoWriter(folder / f"{inputs.clip_name}.mp4", fps, job.codec)}
        if job.attention_video and d.has_attention:
            w["att"] = VideoWriter(folder / f"{inputs.clip_name}_att.mp4", fps, job.codec)
        if job.compare:
            w["compare"] = VideoWriter(folder / f"{inputs.clip_name}_compare.mp4", fps, job.codec)
        writers.append(w)
    bar = tqdm(total=total, unit="frame", disable=not job.progress, desc=inputs.clip_name)
    size = None
    try:
        batch: list[np.ndarray] = []

        def flush():
            x = torch.from_numpy(np.stack([f.transpose(2, 0, 1) for f in batch]))
            for d, w in zip(derainers, writers):
                res = d.derain(x)
                for k in range(x.shape[0]):
                    y = _hwc(res["out"][k])
                    a = res["att"][k, 0].numpy() if res["att"] is not None else None
                    w["out"].write(to_uint8(y))
                    if "att" in w:
                        w["att"].write(heat_map(a))
                    if "compare" in w:
                        w["compare"].write(compare_figure(batch[k], y, a, title=d.label)[0])
            bar.update(len(batch))
            batch.clear()

        for name, frame in frames if source is None else zip(source, frames):
            if frame.dtype == np.uint8:
                frame = frame.astype(np.float32) / 255.0
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise ValueError(f"{name}: frame is {frame.shape[1]}x{frame.shape[0]}, earlier frames are "
                                 f"{size[1]}x{size[0]}; a video needs one frame size")
            batch.append(frame)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    finally:
        bar.close()
        for w in writers:
            for v in w.values():
                v.close()
    written = [v.path for w in writers for v in w.values() if v.frames]
    return written, failed


def _read_frames(files: Sequence[Path], read: Reader, failed: list):
    for f in files:
        try:
            yield f, read(f)
        except OSError as e:
            msg = str(e) if str(f) in str(e) else f"{f}: {e}"
            log.warning("skipped unreadable frame %s", msg)
            failed.append(msg)
