"""python -m src.predict ckpt_path=FILE|[A,B,..]|DIR input=IMAGE|DIR|VIDEO output=DIR [model=NAME] [...]

Derains what you bring: an image, a folder of images (any size, RGB / grayscale / RGBA), a video file, or a
folder of frames (``video.frames=true``), with one checkpoint or several. Options: conf/predict.yaml; outputs
(:mod:`src.inference.run`), per input ``<stem>``: ``<stem>.png`` (``<stem>.npy`` with save_raw=true), side
files in ``attention/`` and ``compare/``, videos as ``<clip>.mp4``; several checkpoints write
``output/<label>/`` and one ``comparison_grid.png``. docs/predict.md tells the rest.

Everything is checked before anything is written: options, every input's and ground truth's header, the
output folder (never an input folder), existing outputs (replaced only with overwrite=true, never through a
symbolic link). The output folder is claimed for the run (:mod:`src.utils.claim`): a second run into it at
the same time is refused. Unreadable inputs are named and the others derained (exit status 1).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.inference.inputs import check_stems, collect_inputs, gt_files, scan_images
from src.inference.models import build_derainers, checkpoint_files
from src.inference.options import check_options
from src.inference.outputs import check_output_dir, check_outputs
from src.inference.run import Job, derain_clip, derain_images, finish, plan_clip_outputs, plan_image_outputs
from src.runs.environment import setup_environment
from src.runs.resolvers import register_resolvers
from src.utils.claim import OutputClaim
from src.utils.errors import ConfigValueError, refusals_exit


def predict(cfg: DictConfig) -> list[Path]:
    """Derain ``cfg.input`` with every checkpoint of ``cfg.ckpt_path``; returns the files written."""
    setup_environment(cfg)
    device = check_options(cfg)
    inputs = collect_inputs(cfg.input, frames=cfg.video.frames)
    if cfg.gt and inputs.kind != "images":
        raise ConfigValueError("gt= scores images; it is not supported for videos")
    images = inputs.kind == "images"
    if images:
        check_stems(inputs.files)
    gt = gt_files(cfg.gt, [f.stem for f in inputs.files]) if images else {}
    out_dir = Path(cfg.output)
    gt_folders = [Path(cfg.gt)] if cfg.gt and Path(cfg.gt).is_dir() else []
    single_files = [p for p in (Path(cfg.input), Path(cfg.gt or "")) if p.is_file()]
    check_output_dir(out_dir, inputs.folders + gt_folders, single_files)
    sizes, failed = scan_images(inputs.files, gt) if images else ({}, [])
    ckpts = checkpoint_files(cfg.ckpt_path)
    derainers = build_derainers(cfg, ckpts, device)
    job = Job(
        out_dir,
        compare=cfg.compare,
        save_raw=cfg.save_raw,
        protocol=cfg.protocol,
        gt=gt,
        attention_video=cfg.video.attention,
        fps=cfg.video.fps,
        codec=cfg.video.codec,
        grid_cell_width=cfg.grid_cell_width,
        progress=cfg.progress,
    )
    planned = plan_image_outputs(inputs.files, derainers, job) if images else plan_clip_outputs(inputs, derainers, job)
    protected = list(inputs.files) + list(gt.values()) + ckpts
    check_outputs(planned, out_dir, protected, cfg.overwrite)
    with OutputClaim.for_folder(out_dir):
        check_outputs(planned, out_dir, protected, cfg.overwrite)  # again: a run may have ended just before
        if images:
            written, unread = derain_images(sizes, derainers, job, cfg.batch_size)
        else:
            written, unread = derain_clip(inputs, derainers, job, cfg.batch_size)
    finish(inputs, written, failed + unread, out_dir)
    return written


register_resolvers()  # ${suite_run_dir} & co. in conf/hydra: before Hydra composes the config


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@refusals_exit
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
