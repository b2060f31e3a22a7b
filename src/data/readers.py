"""Readers: a data set's on-disk layout -> a list of :class:`Pair` (file names only, nothing decoded).

Layouts (docs/datasets.md):

* SPA-Data list file (``real_world.txt``): lines ``"<rainy> <clean>"``; a leading ``/`` or ``./`` is
  stripped and the path joined with the data root -> :func:`read_pair_list`. The scene id of a rainy
  patch ``real_world/{scene}/{scene}-{frame}/{...}.png`` is its grandparent folder -> :func:`scene_id`.
* SPA-Data test: ``rain/NNN.png`` with ``gt/NNNgt.png`` -> :func:`gt_suffix_pairs`.
* one file per pair, halves side by side (DID-MDN, Rain800) -> :func:`side_by_side_pairs`; DID-MDN's
  training tree with density labels -> :func:`didmdn_train_pairs`.
* Rain100 ``rain-N`` / ``norain-N``, Rain200 ``rain/X2/norain-Nx2`` / ``norain/norain-N``, two folders with
  identical names, Rain1400 ``{i}_{j}`` / ``{i}`` -> :func:`read_layout`.

Readers skip pairs whose files are missing and return them in :attr:`ReadResult.missing`;
:func:`warn_missing` turns those into ONE warning with a count, :func:`require_pairs` fails when nothing
is left. A missing folder or list file raises :class:`FileNotFoundError` naming it.

Existence checks never stat files one by one: each folder is listed once with ``os.scandir``
(:class:`DirIndex`), so a 638K-line list costs ~29K directory listings instead of 1.3M ``stat`` calls.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence, Union

from src.utils.errors import ConfigValueError
from src.utils.files import natural_key
from src.utils.image_io import is_image_file

#: DID-MDN density labels (the release's training code): 0 heavy, 1 medium, 2 light; -1 = unknown.
LABEL_NAMES = {0: "heavy", 1: "medium", 2: "light"}
#: Side-by-side orders: which half is the rainy image.
ORDERS = ("rain_clean", "clean_rain")
LAYOUTS = ("rain100", "rain200", "same_names", "rain1400", "side_by_side")
#: Default sub-folders (rain_dir, clean_dir) of the two-folder layouts.
LAYOUT_DIRS = {
    "rain200": ("rain/X2", "norain"),
    "same_names": ("input", "target"),
    "rain1400": ("rainy_image", "ground_truth"),
}


class Pair(NamedTuple):
    """One training / test pair, as file paths (a NamedTuple: immutable, cheap to create by the 600K).

    ``halves`` is set when ONE file holds both images side by side: ``"rain_clean"`` (left half rainy,
    DID-MDN) or ``"clean_rain"`` (left half clean, Rain800); then ``rain == clean`` is that file.
    ``group`` ties pairs that must stay on the same side of a train/val split (SPA-Data scene id, the
    clean image of Rain1400's 14 rainy versions, ...).
    """

    rain: str
    clean: str
    name: str
    label: int = -1
    group: str = ""
    halves: Optional[str] = None

    def swapped(self) -> Pair:
        """The same pair with rainy and clean exchanged."""
        if self.halves is not None:
            return self._replace(halves=ORDERS[1 - ORDERS.index(self.halves)])
        return self._replace(rain=self.clean, clean=self.rain)


class ReadResult(NamedTuple):
    pairs: list[Pair]
    missing: list[str]  # one "rain -> clean" line per skipped pair
    source: str = ""  # the list file or folder read (for messages)


# --- helpers ----------------------------------------------------------------------------------------------
def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: folder not found: {path}")
    return path


def list_images(folder: str) -> list[str]:
    """Image files directly inside ``folder`` (full paths), in natural order. Used for Real_Internet."""
    require_dir(folder, "image folder")
    with os.scandir(folder) as it:
        names = [e.name for e in it if is_image_file(e.name) and e.is_file()]
    return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _images_by_stem(folder: str) -> dict[str, str]:
    return {_stem(os.path.basename(p)): p for p in list_images(folder)}


class DirIndex:
    """``exists(path)`` answered from one ``os.scandir`` per folder (cached), not one ``stat`` per file."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset] = {}

    def names(self, folder: str) -> frozenset:
        found = self._names.get(folder)
        if found is None:
            try:
                with os.scandir(folder or ".") as it:
                    found = frozenset(e.name for e in it)
            except (FileNotFoundError, NotADirectoryError):
                found = frozenset()
            self._names[folder] = found
        return found

    def exists(self, path: str) -> bool:
        folder, _, name = path.rpartition(os.sep)
        return name in self.names(folder)


def warn_missing(result: ReadResult, where: str) -> None:
    """ONE warning that counts the pairs skipped because a file is missing (silent when none)."""
    n = len(result.missing)
    if n:
        warnings.warn(
            f"{where}: skipped {n} pairs whose files are missing (first: {result.missing[0]})",
            UserWarning,
            stacklevel=2,
        )


def require_pairs(result: ReadResult, where: str) -> list[Pair]:
    if not result.pairs:
        extra = (
            f" ({len(result.missing)} listed pairs have missing files, first: {result.missing[0]})"
            if result.missing
            else ""
        )
        raise FileNotFoundError(f"{where}: no image pairs found{extra}")
    return result.pairs


# --- SPA-Data -------------------------------------------------------------------------------------------
def scene_id(rain_rel: str) -> str:
    """Scene of a SPA-Data rainy patch ``real_world/{scene}/{scene}-{frame}/{name}.png``: its grandparent."""
    parts = rain_rel.replace("\\", "/").split("/")
    return parts[-3] if len(parts) >= 3 else ""


def _strip_rel(path: str) -> str:
    return path[2:] if path.startswith("./") else path.lstrip("/")


def _choose_base(entries: Sequence[tuple[str, str]], candidates: Sequence[str], index: DirIndex) -> str:
    """The first base folder under which one of the first listed rainy files exists (default: the first)."""
    for raw_rain, _ in entries[:50]:
        for base in candidates:
            path = raw_rain if base == "" else os.path.join(base, _strip_rel(raw_rain))
            if index.exists(os.path.normpath(path)):
                return base
    return candidates[0]


def _refuse_parent_steps(fields: Sequence[str], list_file: str, lineno: int) -> None:
    """A list line names files under the data root: a ``..`` step (which would leave it, and make ".." a scene id)
    is a ValueError naming ``list_file:line``, like any other malformed line."""
    for field in fields:
        if ".." in field and ".." in re.split(r"[\\/]", field):
            raise ValueError(
                f"{list_file}:{lineno}: {field!r} steps out of its folder with '..'; list lines name "
                f"files under the data root"
            )


def read_pair_list(list_file: str, root: str, label: int = -1) -> ReadResult:
    """Pairs from a list file of lines ``"<rainy> <clean>"`` (blank lines ignored).

    Paths are relative to ``root`` (a leading ``/`` or ``./`` is stripped); if the first listed files are
    not found there but are found relative to the list file's folder, or as absolute paths, that base is
    used instead. Each pair's ``group`` is its scene id (:func:`scene_id`), ``name`` the rainy file's stem.
    A line that is not exactly two paths, or whose path has a ``..`` step, raises ``ValueError`` naming
    ``list_file:line``.
    """
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"list file not found: {list_file}")
    entries: list[tuple[str, str]] = []
    lineno = 0
    try:
        with open(list_file, encoding="utf-8", newline=None) as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise ValueError(
                        f"{list_file}:{lineno}: expected '<rainy path> <clean path>', got {line.strip()!r}"
                    )
                _refuse_parent_steps(fields, list_file, lineno)
                entries.append((fields[0], fields[1]))
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{list_file}:{lineno + 1}: not UTF-8 text ({exc.reason} at byte {exc.start} of the "
            f"line); is this the list file?"
        ) from None

    index = DirIndex()
    base = _choose_base(entries, [root, os.path.dirname(os.path.abspath(list_file)), ""], index)
    prefix = "" if base == "" else os.path.normpath(base) + os.sep
    # hot loop (638K lines): plain string operations, one folder listing per distinct folder
    listed: dict[str, frozenset] = {}
    pairs: list[Pair] = []
    missing: list[str] = []
    strip = base != ""
    for rain_rel, clean_rel in entries:
        if strip:  # = _strip_rel, inlined
            rain_rel = rain_rel[2:] if rain_rel[:2] == "./" else rain_rel.lstrip("/")
            clean_rel = clean_rel[2:] if clean_rel[:2] == "./" else clean_rel.lstrip("/")
        rain_dir, _, rain_name = rain_rel.rpartition("/")
        clean_dir, _, clean_name = clean_rel.rpartition("/")
        rain_names = listed.get(rain_dir)
        if rain_names is None:
            rain_names = listed[rain_dir] = index.names(prefix + rain_dir)
        clean_names = listed.get(clean_dir)
        if clean_names is None:
            clean_names = listed[clean_dir] = index.names(prefix + clean_dir)
        if rain_name in rain_names and clean_name in clean_names:
            scene = rain_dir.rpartition("/")[0].rpartition("/")[2]  # = scene_id(rain_rel)
            pairs.append(Pair(prefix + rain_rel, prefix + clean_rel, rain_name.rpartition(".")[0], label, scene))
        else:
            missing.append(f"{prefix + rain_rel} -> {prefix + clean_rel}")
    return ReadResult(pairs, missing, list_file)


def gt_suffix_pairs(folder: str, rain_dir: str = "rain", clean_dir: str = "gt", suffix: str = "gt") -> ReadResult:
    """SPA-Data test layout: ``rain/NNN.png`` with ``gt/NNN{suffix}.png`` (``gt/NNN.png`` is accepted too)."""
    rain_dir, clean_dir = os.path.join(folder, rain_dir), os.path.join(folder, clean_dir)
    require_dir(rain_dir, "rainy-image folder")
    clean_by_stem = _images_by_stem(require_dir(clean_dir, "ground-truth folder"))
    pairs, missing = [], []
    for rain in list_images(rain_dir):
        stem = _stem(os.path.basename(rain))
        clean = clean_by_stem.get(stem + suffix) or clean_by_stem.get(stem)
        if clean is None:
            missing.append(f"{rain} -> {os.path.join(clean_dir, stem + suffix)}.*")
        else:
            pairs.append(Pair(rain, clean, stem, -1, stem))
    return ReadResult(pairs, missing, folder)


# --- side by side (DID-MDN, Rain800) -------------------------------------------------------------------
def _numeric_order(paths: list[str]) -> list[str]:
    """Sort by the integer value of the stem when every stem is a number (0- or 1-based alike)."""
    stems = [_stem(os.path.basename(p)) for p in paths]
    if stems and all(s.isdigit() for s in stems):
        return [p for _, p in sorted(zip((int(s) for s in stems), paths))]
    return sorted(paths, key=lambda p: natural_key(os.path.basename(p)))


def side_by_side_pairs(folder: str, order: str = "rain_clean", label: int = -1, name_prefix: str = "") -> ReadResult:
    """One image per pair with both halves side by side, sorted numerically.

    ``order="rain_clean"``: LEFT half rainy, RIGHT half clean (DID-MDN); ``"clean_rain"``: the reverse (Rain800).
    """
    if order not in ORDERS:
        raise ValueError(f"data.order={order!r}: choose 'rain_clean' (left half rainy) or 'clean_rain'")
    files = _numeric_order(list_images(require_dir(folder, "side-by-side image folder")))
    pairs = []
    for p in files:
        stem = _stem(os.path.basename(p))
        pairs.append(Pair(p, p, name_prefix + stem, label, stem, order))
    return ReadResult(pairs, [], folder)


def didmdn_train_pairs(
    folder: str, classes: Mapping[str, int], inner_dir: str = "train2018new", order: str = "rain_clean"
) -> ReadResult:
    """DID-MDN training: ``{folder}/{class}/{inner_dir}/{i}.jpg`` side by side, label from the class folder.

    ``classes`` maps folder name -> label, e.g. ``{Rain_Heavy: 0, Rain_Medium: 1, Rain_Light: 2}``.
    Names are ``"{class}/{i}"``; ``group`` is ``i``.
    """
    pairs: list[Pair] = []
    for cls, label in classes.items():
        sub = os.path.join(folder, cls, inner_dir) if inner_dir else os.path.join(folder, cls)
        pairs += side_by_side_pairs(sub, order, int(label), name_prefix=f"{cls}/").pairs
    return ReadResult(pairs, [], folder)


# --- folder layouts -------------------------------------------------------------------------------------
def _match(rain_files: Iterable[str], clean_for, source: str) -> ReadResult:
    pairs, missing = [], []
    for rain in rain_files:
        clean, missing_name = clean_for(rain)
        stem = _stem(os.path.basename(rain))
        if clean is None:
            missing.append(f"{rain} -> {missing_name}")
        else:
            pairs.append(Pair(rain, clean, stem, -1, clean))
    return ReadResult(pairs, missing, source)


def rain100_pairs(folder: str) -> ReadResult:
    """Flat folder ``rain-N.png`` with ``norain-N.png``; N padded or not (matched by its value)."""
    require_dir(folder, "Rain100 folder")
    rain_re, clean_re = re.compile(r"^rain-(\d+)$"), re.compile(r"^norain-(\d+)$")
    rains: dict[str, int] = {}
    cleans: dict[int, str] = {}
    for p in list_images(folder):
        stem = _stem(os.path.basename(p))
        if m := rain_re.match(stem):
            rains[p] = int(m.group(1))
        elif m := clean_re.match(stem):
            cleans[int(m.group(1))] = p

    def clean_for(rain: str):
        return cleans.get(rains[rain]), os.path.join(folder, f"norain-{rains[rain]}.*")

    return _match(sorted(rains, key=rains.__getitem__), clean_for, folder)


def rain200_pairs(folder: str, rain_dir: str = "rain/X2", clean_dir: str = "norain") -> ReadResult:
    """Rain200L/H: ``rain/X2/norain-Nx2.png`` with ``norain/norain-N.png`` (the ``x2`` suffix is dropped)."""
    rain_dir, clean_dir = os.path.join(folder, rain_dir), os.path.join(folder, clean_dir)
    require_dir(rain_dir, "rainy-image folder")
    cleans = _images_by_stem(require_dir(clean_dir, "clean-image folder"))
    scale_re = re.compile(r"^(.*?)x\d+$")

    def clean_for(rain: str):
        stem = _stem(os.path.basename(rain))
        m = scale_re.match(stem)
        key = m.group(1) if m else stem
        return cleans.get(key), os.path.join(clean_dir, key + ".*")

    return _match(list_images(rain_dir), clean_for, rain_dir)


def same_name_pairs(folder: str, rain_dir: str = "input", clean_dir: str = "target") -> ReadResult:
    """Two folders holding files with identical names (small/rain + small/norain, input + target)."""
    rain_dir, clean_dir = os.path.join(folder, rain_dir), os.path.join(folder, clean_dir)
    require_dir(rain_dir, "rainy-image folder")
    cleans = set(os.path.basename(p) for p in list_images(require_dir(clean_dir, "clean-image folder")))

    def clean_for(rain: str):
        name = os.path.basename(rain)
        path = os.path.join(clean_dir, name)
        return (path if name in cleans else None), path

    return _match(list_images(rain_dir), clean_for, rain_dir)


def rain1400_pairs(folder: str, rain_dir: str = "rainy_image", clean_dir: str = "ground_truth") -> ReadResult:
    """Rain1400 / Rain12600 (DDN): ``rainy_image/{i}_{j}.jpg`` with ``ground_truth/{i}.jpg``."""
    rain_dir, clean_dir = os.path.join(folder, rain_dir), os.path.join(folder, clean_dir)
    require_dir(rain_dir, "rainy-image folder")
    cleans = _images_by_stem(require_dir(clean_dir, "clean-image folder"))

    def clean_for(rain: str):
        key = _stem(os.path.basename(rain)).rsplit("_", 1)[0]
        return cleans.get(key), os.path.join(clean_dir, key + ".*")

    return _match(list_images(rain_dir), clean_for, rain_dir)


def read_layout(
    folder: str, layout: str, rain_dir: Optional[str] = None, clean_dir: Optional[str] = None, order: str = "rain_clean"
) -> ReadResult:
    """Pairs of one folder in a named layout (``LAYOUTS``); ``rain_dir``/``clean_dir`` default per layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"data.layout={layout!r}: choose from {list(LAYOUTS)}")
    require_dir(folder, f"{layout} data folder")
    if layout == "rain100":
        return rain100_pairs(folder)
    if layout == "side_by_side":
        return side_by_side_pairs(folder, order)
    default_rain, default_clean = LAYOUT_DIRS[layout]
    dirs = (rain_dir or default_rain, clean_dir or default_clean)
    return {"rain200": rain200_pairs, "same_names": same_name_pairs, "rain1400": rain1400_pairs}[layout](folder, *dirs)


# --- splits ---------------------------------------------------------------------------------------------
def check_holdout(holdout: Any, key: str) -> None:
    """A held-out-groups value: null / an int >= 0 / a list of group ids; otherwise a ValueError naming the key."""
    if holdout is None:
        return
    if isinstance(holdout, bool) or not isinstance(holdout, (int, Sequence)) or isinstance(holdout, (str, bytes)):
        raise ConfigValueError(f"data.{key}={holdout!r}: expected a number of groups (int) or a list of group ids")
    if isinstance(holdout, int) and holdout < 0:
        raise ConfigValueError(f"data.{key}={holdout}: must be >= 0")


def split_groups(pairs: Sequence[Pair], holdout: Union[None, int, Sequence], key: str = "val_scenes"):
    """Split pairs into (kept, held_out) by ``group``: ``holdout`` = N (the last N group ids in natural
    order) or an explicit list of group ids. No group is on both sides."""
    check_holdout(holdout, key)
    if not holdout:
        return list(pairs), []
    groups = sorted({p.group for p in pairs}, key=natural_key)
    if isinstance(holdout, int):
        if holdout >= len(groups):
            raise ConfigValueError(
                f"data.{key}={holdout} would hold out all {len(groups)} groups, leaving nothing to "
                f"train on; hold out fewer (at most {len(groups) - 1})"
            )
        chosen = set(groups[-holdout:])
    else:  # ids match exactly, or by value when numeric (YAML reads `[000, 7]` as [0, 7])
        by_value = {int(g): g for g in groups if g.isdigit()}

        def resolve(g) -> str:
            g = str(g)
            return by_value.get(int(g), g) if g.isdigit() and g not in groups else g

        chosen = {resolve(g) for g in holdout}
        unknown = sorted(chosen - set(groups), key=natural_key)
        if unknown:
            raise ConfigValueError(
                f"data.{key}: unknown ids {unknown} (known: {groups[:10]}{'...' if len(groups) > 10 else ''})"
            )
    return [p for p in pairs if p.group not in chosen], [p for p in pairs if p.group in chosen]


def evenly_spaced(items: Sequence, n: Optional[int]) -> list:
    """At most ``n`` items spread evenly over the sequence (all of them when n is None or larger)."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    if n <= 0:
        return []
    return [items[(i * len(items)) // n] for i in range(n)]
