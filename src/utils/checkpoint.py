"""Reading weight files: every checkpoint the suite opens goes through :func:`read_checkpoint`.

Reading is weights-only, always: ``torch.load(weights_only=True)`` accepts tensors and plain containers
(dict, list, str, numbers) and refuses any other pickled Python object, because unpickling one can run code.
There is no fallback to a full unpickle. A file that cannot be read gets a :class:`CheckpointError` naming
the file and what it is: not a checkpoint (an image, text, a plain pickle), truncated or damaged, refused
(with the Python object it holds), or the wrong file (sha256).

The suite understands three kinds of files (:attr:`Checkpoint.kind`):

``suite``    a checkpoint written by ``src.train`` (Lightning's ``state_dict`` with ``net.*`` keys, the run's
             resolved config under ``suite_config``); the only kind ``ckpt_path=`` resumes in ``src.train``.
``release``  the authors' SPANet file (``{'net': ...}`` in their naming).
``weights``  any other state dict: tensors at the top level or under ``net`` / ``state_dict`` / ``model`` /
             ``params`` / ``params_ema`` (``module.`` and ``net.`` prefixes are stripped).

Files in the naming of a model's authors are converted by the network itself: a network that can read them
defines ``is_release_state_dict(state)`` and ``convert_release_state_dict(state)`` (SPANet, via
:mod:`src.models.spanet_release`; other networks can do the same). This module never imports a model.

:func:`load_net_weights` puts a file into a network strictly (evaluation, prediction); :func:`init_weights`
loads whatever fits and reports the rest (``model.init_from``, fine-tuning); :func:`require_complete` refuses
a ``model.init_from`` report that left tensors at their initial values (evaluation, prediction: the output of a
half-random network is no result); :func:`check_resumable` refuses a ``ckpt_path=`` that is not a suite
checkpoint of the same model; :func:`require_finite_weights` refuses weights that hold a NaN or an infinity
(:class:`NonFiniteError`, the one check of training, evaluation and prediction). A network may name the likely
mix-up behind missing tensors with ``missing_weights_hint(missing) -> str | None`` (DRSformer: the authors'
SPA-Data weights, trained without MEFC). Writing checkpoints is :mod:`src.runs.checkpoint_io`'s job.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

from src.utils.errors import Refusal

log = logging.getLogger(__name__)

#: sha256 of the authors' released file, ``weights/spanet_release.pt`` (see weights/README.md)
RELEASE_SHA256 = "3b5d58d0f4569004a0d2dc6f4373463bd60991fc8a04c061361357cf012e5eb0"

_STATE_KEYS = ("net", "state_dict", "model", "params_ema", "params")
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"RIFF": "a RIFF file (WebP image / WAV)",
    b"\x1f\x8b": "a gzip file",
    b"\x89HDF": "an HDF5 file",
    b"%PDF": "a PDF document",
    b"\x7fELF": "an executable",
}


class CheckpointError(ValueError):
    """A file given as a checkpoint that the suite cannot or will not use; the message names the file."""


class NonFiniteError(FloatingPointError):
    """Weights or metrics of a run are NaN or infinite."""


def nonfinite_tensors(state: Mapping[str, object]) -> list[str]:
    """Names of the floating-point tensors in ``state`` that hold a NaN or an infinity."""
    return [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def require_finite_weights(state: Mapping[str, object], where: str) -> None:
    bad = nonfinite_tensors(state)
    if bad:
        raise NonFiniteError(
            f"{where}: non-finite weights (NaN or inf) in {len(bad)} tensor(s), first: "
            f"{', '.join(bad[:5])}; the run diverged (lower the learning rate, "
            f"schedule.optimizer.lr)"
        )


class IncompleteWeightsError(Refusal, CheckpointError):
    """Prediction or evaluation from a ``model.init_from`` file that leaves some of the network's tensors at their
    initial values (:func:`require_complete`)."""


@dataclass
class Checkpoint:
    """A weights file read once: its contents, sha256 and what kind of file it is."""

    path: Path
    contents: dict
    sha256: str
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        c = self.contents
        if isinstance(c.get("state_dict"), Mapping) and "pytorch-lightning_version" in c:
            self.kind = "suite" if "suite_config" in c else "lightning"
        elif isinstance(c.get("net"), Mapping) and _is_spanet_release(_strip(c["net"], "module.")):
            self.kind = "release"
        else:
            self.kind = "weights"

    @property
    def run_config(self) -> dict:
        """The resolved run config that ``src.train`` stored ({} for other kinds)."""
        return dict(self.contents.get("suite_config") or {})

    @property
    def model(self) -> Optional[str]:
        """The ``model=`` choice of the run that wrote it (``spanet_release`` for the authors' file)."""
        if self.kind == "release":
            return "spanet_release"
        return (self.run_config.get("run_info") or {}).get("model")

    def describe(self) -> str:
        if self.kind == "suite":
            step = self.contents.get("global_step")
            return f"a checkpoint of a src.train run (model={self.model}, step {step})"
        if self.kind == "lightning":
            return "a Lightning checkpoint of another project (no suite_config)"
        if self.kind == "release":
            same = "" if self.sha256 == RELEASE_SHA256 else ", not byte-identical to their published file"
            return f"the authors' released SPANet weights (model=spanet_release{same})"
        return f"a plain state dict ({len(self.state_dict())} tensors)"

    def state_dict(self) -> dict[str, Tensor]:
        """The network's tensors under their names in the file (suite: without the ``net.`` prefix)."""
        c = self.contents
        if self.kind in ("suite", "lightning"):
            ours = {k: v for k, v in c["state_dict"].items() if k.startswith("net.")}
            return _strip(ours or dict(c["state_dict"]), "net.")
        for key in _STATE_KEYS:
            if isinstance(c.get(key), Mapping) and c[key] and all(torch.is_tensor(v) for v in c[key].values()):
                return _strip(_strip(dict(c[key]), "module."), "net.")
        tensors = {k: v for k, v in c.items() if torch.is_tensor(v)}
        return _strip(_strip(tensors, "module."), "net.")

    def state_dict_for(self, net: nn.Module) -> dict[str, Tensor]:
        """:meth:`state_dict` in ``net``'s naming: a file in the naming of the network's authors is converted by
        the network (``net.convert_release_state_dict``)."""
        state = self.state_dict()
        if hasattr(net, "convert_release_state_dict") and net.is_release_state_dict(state):
            try:
                return net.convert_release_state_dict(state)
            except (KeyError, ValueError) as err:
                raise CheckpointError(f"{self.path}: {str(err).strip(chr(34) + chr(39))}") from None
        if self.kind == "release":
            raise CheckpointError(
                f"{self.path}: this is {self.describe()}; it cannot be loaded into "
                f"{type(net).__name__} (use model=spanet_release, or a SPANet variant)"
            )
        return state


def _strip(state: Mapping, prefix: str) -> dict:
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _is_spanet_release(state: Mapping) -> bool:
    """The naming of the authors' SPANet file (what ``SPANet.is_release_state_dict`` accepts)."""
    return "conv_in.0.weight" in state and any(str(k).startswith("res_block") for k in state)


def _what_is(data: bytes) -> str:
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            return what
    head = data[:512]
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return f"an unknown format (first bytes {data[:8]!r})"


def read_checkpoint(path: str | Path, sha256: Optional[str] = None) -> Checkpoint:
    """Read ``path`` once, weights-only, onto the CPU; check its sha256 first when ``sha256`` is given.

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for anything that is not a
    readable checkpoint dict (the message names the file and what it is)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        hint = "" if path.is_absolute() else f" (relative to the current directory {Path.cwd()})"
        raise FileNotFoundError(f"checkpoint file not found: {path}{hint}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        what = (
            "a Git LFS pointer, not the file itself"
            if data.startswith(b"version https://git-lfs")
            else f"{len(data):,} bytes"
        )
        raise CheckpointError(
            f"{path}: sha256 {digest} is not the expected {sha256} ({what}); the file is damaged "
            "or a different file under this name (a clone restores it with `git checkout`)"
        )
    if not data:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    is_zip, is_pickle = data.startswith(b"PK\x03\x04"), data[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {_what_is(data)}")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                f"{path}: refused: the file holds a pickled Python object ({found.group(1)}), not only tensors and "
                "plain containers. Unpickling it could run arbitrary code, so the suite never does. If you made the "
                "file yourself, save just the weights (torch.save(net.state_dict(), ...))"
            ) from None
        if is_pickle and not is_zip:
            raise CheckpointError(
                f"{path}: refused: a plain Python pickle that torch.save did not write "
                "(weights-only loading cannot read it, and unpickling could run code)"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, OSError) as err:  # IndexError: a pickle cut short
        truncated = is_zip or isinstance(err, (EOFError, IndexError)) or "EOF" in str(err)
        state = "truncated or damaged" if truncated else "unreadable"
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: {state} checkpoint file ({len(data):,} bytes): {first}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict")
    ckpt = Checkpoint(path, obj, digest)
    if ckpt.kind == "release":
        if digest == RELEASE_SHA256:
            log.info("%s: the authors' released SPANet weights (sha256 verified)", path)
        else:
            log.warning(
                "%s: release-format SPANet weights, but not the authors' published file (sha256 %s)", path, digest
            )
    return ckpt


def _as_checkpoint(source: str | Path | Checkpoint) -> Checkpoint:
    return source if isinstance(source, Checkpoint) else read_checkpoint(source)


def _owner(ckpt: Checkpoint) -> str:
    return f"; this checkpoint is model={ckpt.model}" if ckpt.model else f"; it is {ckpt.describe()}"


def load_net_weights(net: nn.Module, source: str | Path | Checkpoint) -> nn.Module:
    """Load a file's weights into ``net`` in place, strictly (every tensor, every shape). Returns ``net``.

    ``source``: a path, or a :class:`Checkpoint` already read (so a file is read once)."""
    ckpt = _as_checkpoint(source)
    state = ckpt.state_dict_for(net)
    if not state:
        raise CheckpointError(f"{ckpt.path}: holds no network tensors; top-level keys: {sorted(ckpt.contents)}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{ckpt.path}: its weights do not fit {type(net).__name__}{_owner(ckpt)}: {str(err).splitlines()[0]} ..."
        ) from None
    return net


def init_weights(net: nn.Module, source: str | Path | Checkpoint, sha256: Optional[str] = None) -> dict:
    """``model.init_from``: copy every tensor of the file whose name and shape fit ``net``; report the rest.

    Returns ``{"loaded": [...], "missing": [...], "unexpected": [...], "mismatched": [...]}`` (parameter names)
    and logs it. Fails when nothing fits (a file of another model)."""
    ckpt = source if isinstance(source, Checkpoint) else read_checkpoint(source, sha256=sha256)
    state = ckpt.state_dict_for(net)
    own = net.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    report = {
        "loaded": sorted(fits),
        "missing": sorted(set(own) - set(fits)),
        "unexpected": sorted(set(state) - set(own)),
        "mismatched": sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)),
    }
    if not fits:
        raise CheckpointError(f"{ckpt.path}: none of its {len(state)} tensors fits {type(net).__name__}{_owner(ckpt)}")
    net.load_state_dict(fits, strict=False)
    log.info(
        "model.init_from=%s (%s): loaded %d of the network's %d tensors",
        ckpt.path,
        ckpt.describe(),
        len(fits),
        len(own),
    )
    if report["missing"]:
        log.warning(
            "model.init_from: %d tensors not in the file keep their initial values: %s",
            len(report["missing"]),
            _short(report["missing"]),
        )
    if report["mismatched"]:
        log.warning(
            "model.init_from: %d tensors of the file have other shapes and were not loaded: %s",
            len(report["mismatched"]),
            _short(report["mismatched"]),
        )
    if report["unexpected"]:
        log.warning(
            "model.init_from: %d tensors of the file have no place in the network: %s",
            len(report["unexpected"]),
            _short(report["unexpected"]),
        )
    return report


def require_complete(net: nn.Module, report: dict, source: str | Path) -> None:
    """Prediction and evaluation: refuse the ``model.init_from`` file ``source`` when its :func:`init_weights`
    ``report`` left any of ``net``'s tensors at their initial values. The message names the file, how many tensors
    are missing, a few of them, and the likely fix (the network's ``missing_weights_hint``, or a generic one)."""
    missing = report["missing"]
    if not missing:
        return
    hint = net.missing_weights_hint(missing) if hasattr(net, "missing_weights_hint") else None
    if not hint:
        shapes = f" ({len(report['mismatched'])} have other shapes: check model.net.*)" if report["mismatched"] else ""
        hint = f"pick the model= the file was trained as{shapes}"
    raise IncompleteWeightsError(
        f"model.init_from={source}: {len(missing)} of the network's {len(net.state_dict())} tensors are not in the "
        f"file and would keep their random initial values ({_short(missing, 3)}); {hint}. (src.train loads what "
        "fits, to fine-tune from it.)"
    )


def _short(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def check_resumable(path: str | Path, model: Optional[str] = None) -> Checkpoint:
    """``src.train ckpt_path=``: accept only a checkpoint of a ``src.train`` run (of ``model``, when given)."""
    ckpt = read_checkpoint(path)
    if ckpt.kind != "suite":
        raise CheckpointError(
            f"ckpt_path={path}: this is {ckpt.describe()}, not a checkpoint of a src.train run. ckpt_path= resumes "
            f"an interrupted run; to start training from these weights use model.init_from={path}"
        )
    if model and ckpt.model and ckpt.model != model:
        raise CheckpointError(
            f"ckpt_path={path}: this checkpoint is model={ckpt.model}, but this run is "
            f"model={model}; pass model={ckpt.model} to resume it, or model.init_from={path} to "
            "start a new run from its weights"
        )
    return ckpt
