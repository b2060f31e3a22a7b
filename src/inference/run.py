"""The prediction loops: images (batched by size) and clips (video file or folder of frames).

Every derainer (one per checkpoint) runs on the same inputs. With one derainer, outputs go to ``output/``;
with several, to ``output/<label>/`` and, for images, one ``output/comparison_grid.png`` shows all methods on
all inputs. File names per input ``<stem>`` (clips: the video's stem or the frames folder's name); the side
files live in their own subfolders, so that the output folder holds the derained images only
(``src.eval pred_dir=<output>`` scores exactly them):

===========================  ==============================================================================
``<stem>.png``               derained image, 8-bit RGB (clipped to [0, 1], x255, rounded half up)
``<stem>.npy``               ``save_raw=true``: H x W x 3 float32, the unclipped network output
``attention/<stem>.png``     first attention map as a heat map (models with attention)
``attention/<stem>.npy``     ``save_raw=true``: H x W float32 attention map
``compare/<stem>.png``       ``compare=true``: rain | derained | attention [| ground truth with PSNR / SSIM]
``<clip>.mp4``               derained video, same frame rate and size (``attention/<clip>.mp4``:
                             ``video.attention=true``; ``compare/<clip>.mp4``: ``compare=true``)
===========================  ==============================================================================

A video file whose container declares more frames than can be decoded (cut short) is derained as far as it
reads and reported, like an unreadable image: named in a warning and in the error the run ends with.
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
from src.inference.inputs import Inputs, read_input
from src.inference.video import VideoReadError, VideoWriter, iter_video, video_info
from src.metrics.figures import _resize, compare_figure, comparison_grid, heat_map, to_uint8
from src.metrics.folder import PREDICT_SIDE_FOLDERS
from src.utils.image_io import ImageReadError

log = logging.getLogger(__name__)

GRID_NAME = "comparison_grid.png"
ATTENTION, COMPARE = PREDICT_SIDE_FOLDERS  # subfolders of the side files (folder scoring leaves them out)


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


def image_outputs(folder: Path, stem: str, d: Derainer, job: Job) -> dict[str, Path]:
    """What is written for one image: {"out", "att", "raw", "att_raw", "compare"} (those that apply) -> path."""
    paths = {"out": folder / f"{stem}.png"}
    if d.has_attention:
        paths["att"] = folder / ATTENTION / f"{stem}.png"
    if job.save_raw:
        paths["raw"] = folder / f"{stem}.npy"
        if d.has_attention:
            paths["att_raw"] = folder / ATTENTION / f"{stem}.npy"
    if job.compare:
        paths["compare"] = folder / COMPARE / f"{stem}.png"
    return paths


def clip_outputs(folder: Path, clip: str, d: Derainer, job: Job) -> dict[str, Path]:
    """What is written for one clip: {"out", "att", "compare"} (those that apply) -> path."""
    paths = {"out": folder / f"{clip}.mp4"}
    if job.attention_video and d.has_attention:
        paths["att"] = folder / ATTENTION / f"{clip}.mp4"
    if job.compare:
        paths["compare"] = folder / COMPARE / f"{clip}.mp4"
    return paths


def plan_image_outputs(files: Sequence[Path], derainers: Sequence[Derainer], job: Job) -> list[Path]:
    planned = [
        p
        for d, folder in zip(derainers, model_dirs(job, derainers))
        for f in files
        for p in image_outputs(folder, f.stem, d, job).values()
    ]
    return planned + ([job.out_dir / GRID_NAME] if len(derainers) > 1 else [])


def plan_clip_outputs(inputs: Inputs, derainers: Sequence[Derainer], job: Job) -> list[Path]:
    return [
        p
        for d, folder in zip(derainers, model_dirs(job, derainers))
        for p in clip_outputs(folder, inputs.clip_name, d, job).values()
    ]


def score(protocol: str, pred: np.ndarray, gt: np.ndarray) -> dict:
    """PSNR / SSIM of one H x W x 3 float image against its ground truth under a named protocol."""
    from src.metrics.protocols import PROTOCOL_FUNCTIONS

    psnr_fn, ssim_fn = PROTOCOL_FUNCTIONS[protocol]
    p = torch.from_numpy(np.ascontiguousarray(pred.transpose(2, 0, 1)))[None].double()
    g = torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1)))[None].double()
    return {"psnr": float(psnr_fn(p, g)[0]), "ssim": float(ssim_fn(p, g)[0])}


def _batches_by_size(sizes: dict[Path, tuple[int, int]], batch_size: int):
    """Files grouped by image size (in first-seen order) and cut into batches of at most ``batch_size``."""
    groups: dict = {}
    for f, size in sizes.items():
        groups.setdefault(size, []).append(f)
    for group in groups.values():
        for k in range(0, len(group), batch_size):
            yield group[k : k + batch_size]


def _tile_counter(bar) -> Callable[[int], None]:
    """Shows the tiles done of the current image in the progress bar (large images take a while each)."""
    done = [0]

    def update(n: int) -> None:
        done[0] += n
        bar.set_postfix(tiles=done[0], refresh=True)

    return update


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0)


def _unreadable(f: Path, e: OSError, failed: list[str], what: str = "input") -> None:
    msg = str(e) if str(f) in str(e) else f"{f}: {e}"
    log.warning("skipped unreadable %s %s", what, msg)
    failed.append(msg)


def _read_batch(files: Sequence[Path], job: Job, failed: list[str]):
    """(files, images, ground truths or Nones) of a batch; an input whose image or ground truth cannot be read
    (found only now: its header was fine) is named in ``failed`` and left out."""
    names, images, gts = [], [], []
    for f in files:
        try:
            im = read_input(f)
            gt = read_input(job.gt[f.stem]) if job.gt else None
        except OSError as e:  # ImageReadError, FileNotFoundError, PermissionError
            _unreadable(f, e, failed)
            continue
        if gt is not None and gt.shape != im.shape:
            _unreadable(
                f,
                OSError(
                    f"its ground truth {job.gt[f.stem]} is {gt.shape[1]}x{gt.shape[0]}, the input "
                    f"{im.shape[1]}x{im.shape[0]}"
                ),
                failed,
            )
            continue
        names.append(f), images.append(im), gts.append(gt)
    return names, images, gts


def _derain_batch(images: list[np.ndarray], derainers: Sequence[Derainer], bar) -> dict[int, list]:
    """{id(derainer): [(output H x W x 3, attention H x W or None), ...]} for images of one size."""
    x = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images]))
    results = {}
    for d in derainers:
        res = d.derain(x, on_tiles=_tile_counter(bar))
        results[id(d)] = [
            (_hwc(res["out"][k]), res["att"][k, 0].numpy() if res["att"] is not None else None)
            for k in range(x.shape[0])
        ]
    return results


def derain_images(
    sizes: dict[Path, tuple[int, int]], derainers: Sequence[Derainer], job: Job, batch_size: int
) -> tuple[list[Path], list[str]]:
    """Derain the image files whose headers were read (``sizes``: file -> (W, H), from
    :func:`src.inference.inputs.scan_images`); returns (written files, "path: reason" of every input that could
    not be read after all)."""
    folders = model_dirs(job, derainers)
    written: list[Path] = []
    failed: list[str] = []
    grid_rows = []
    bar = tqdm(total=len(sizes) * len(derainers), unit="img", disable=not job.progress, desc="derain")
    try:
        for batch_files in _batches_by_size(sizes, batch_size):
            names, images, gts = _read_batch(batch_files, job, failed)
            bar.update((len(batch_files) - len(names)) * len(derainers))
            if not images:
                continue
            results = _derain_batch(images, derainers, bar)
            for d, folder in zip(derainers, folders):
                for f, im, gt, (y, a) in zip(names, images, gts, results[id(d)]):
                    written += _write_image_outputs(image_outputs(folder, f.stem, d, job), im, y, a, gt, job, d.label)
                    bar.update(1)
            if len(derainers) > 1:
                grid_rows += [
                    _grid_row(f, im, gt, [(d.label, results[id(d)][k][0]) for d in derainers], job)
                    for k, (f, im, gt) in enumerate(zip(names, images, gts))
                ]
    finally:
        bar.close()
    if grid_rows:
        grid, _ = comparison_grid(grid_rows, job.grid_cell_width, job.protocol if job.gt else None)
        iio.imwrite(job.out_dir / GRID_NAME, grid)
        written.append(job.out_dir / GRID_NAME)
    return written, failed


def _grid_row(f: Path, rain: np.ndarray, gt: Optional[np.ndarray], outputs: list[tuple[str, np.ndarray]], job: Job):
    """One row of the comparison grid: Rain | each model | Ground truth, with scores when there is a ground truth."""

    def cell(label, img):
        return (
            label,
            _resize(to_uint8(img), job.grid_cell_width),
            score(job.protocol, img, gt) if gt is not None else None,
        )

    cells = [cell("Rain", rain)] + [cell(label, y) for label, y in outputs]
    if gt is not None:
        cells.append(("Ground truth", _resize(to_uint8(gt), job.grid_cell_width), None))
    return f.stem, cells


def _write_image_outputs(paths: dict[str, Path], rain, y, a, gt, job: Job, label: str) -> list[Path]:
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(paths["out"], to_uint8(y))
    if "att" in paths:
        iio.imwrite(paths["att"], heat_map(a))
    if "raw" in paths:
        np.save(paths["raw"], y.astype(np.float32))
    if "att_raw" in paths:
        np.save(paths["att_raw"], a.astype(np.float32))
    if "compare" in paths:
        scores = None
        if gt is not None:
            scores = {"rain": score(job.protocol, rain, gt), "derained": score(job.protocol, y, gt)}
        iio.imwrite(paths["compare"], compare_figure(rain, y, a, gt, scores, job.protocol, title=label)[0])
    return list(paths.values())


def _clip_frames(inputs: Inputs, job: Job, failed: list[str]):
    """(fps, frame count for the progress bar, declared frame count or None, iterator of (name, frame))."""
    if inputs.kind == "video":
        info = video_info(inputs.files[0])
        names = (f"{inputs.files[0]} frame {k}" for k in range(10**9))
        return info["fps"], info["frames"], info["declared"], zip(names, iter_video(inputs.files[0]))
    return float(job.fps), len(inputs.files), None, _read_frames(inputs.files, failed)


def _writers(inputs: Inputs, derainers: Sequence[Derainer], job: Job, fps: float) -> list[dict[str, VideoWriter]]:
    writers = []
    for d, folder in zip(derainers, model_dirs(job, derainers)):
        paths = clip_outputs(folder, inputs.clip_name, d, job)
        for p in paths.values():
            p.parent.mkdir(parents=True, exist_ok=True)
        writers.append({kind: VideoWriter(p, fps, job.codec) for kind, p in paths.items()})
    return writers


def derain_clip(
    inputs: Inputs, derainers: Sequence[Derainer], job: Job, batch_size: int
) -> tuple[list[Path], list[str]]:
    """Derain a video file or a folder of frames into videos of the same frame rate and size; returns (written
    files, problems: unreadable frames, or a video that decodes to fewer frames than its container declares)."""
    failed: list[str] = []
    fps, total, declared, frames = _clip_frames(inputs, job, failed)
    writers = _writers(inputs, derainers, job, fps)
    bar = tqdm(total=total, unit="frame", disable=not job.progress, desc=inputs.clip_name)
    size, n_read, batch = None, 0, []
    try:
        for name, frame in frames:
            if frame.dtype == np.uint8:
                frame = frame.astype(np.float32) / 255.0
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise ValueError(
                    f"{name}: frame is {frame.shape[1]}x{frame.shape[0]}, earlier frames are "
                    f"{size[1]}x{size[0]}; a video needs one frame size"
                )
            batch.append(frame)
            n_read += 1
            if len(batch) == batch_size:
                _write_frames(batch, derainers, writers, bar)
        if batch:
            _write_frames(batch, derainers, writers, bar)
    finally:
        bar.close()
        for w in writers:
            for v in w.values():
                v.close()
    if declared is not None and n_read < declared:
        failed.append(
            f"{inputs.files[0]}: read {n_read} of the {declared} frames its container declares (the file "
            f"is cut short or damaged); the derained video has {n_read} frames"
        )
        log.warning("%s", failed[-1])
    return [v.path for w in writers for v in w.values() if v.frames], failed


def _write_frames(batch: list[np.ndarray], derainers: Sequence[Derainer], writers: list[dict], bar) -> None:
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


def _read_frames(files: Sequence[Path], failed: list):
    for f in files:
        try:
            yield f, read_input(f)
        except OSError as e:
            _unreadable(f, e, failed, "frame")


def finish(inputs: Inputs, written: list[Path], failed: list[str], out_dir: Path) -> None:
    """Log what was done; raise when the result is partial (exit status 1): unreadable inputs or frames, or a
    video cut short, named one per line."""
    total = len(inputs.files)
    what = "frame(s)" if inputs.kind == "frames" else "input file(s)"
    if inputs.kind == "video":
        log.info("derained %s into %s (%d file(s) written)", inputs.root, out_dir, len(written))
    else:
        log.info(
            "derained %d of %d %s into %s (%d file(s) written)", total - len(failed), total, what, out_dir, len(written)
        )
    if not written:  # e.g. a video that decodes to no frames: nothing was derained, so this is no success
        raise ImageReadError(
            f"input={inputs.root}: no image or frame could be derained; nothing was written"
            + "".join(f"\n  {m}" for m in failed)
        )
    if inputs.kind == "video" and failed:
        raise VideoReadError(f"input={inputs.root}: the video was derained only in part:\n  " + "\n  ".join(failed))
    if failed:
        listing = "\n  ".join(failed)
        raise ImageReadError(f"could not read {len(failed)} of {total} {what}; the others were derained:\n  {listing}")
