"""python -m src.info [groups=[model,data]]: what the suite offers, without reading conf/.

Lists every model (parameter count and where it comes from), data config (layout and what ``data.root`` must
hold), schedule (optimiser, steps, batch), recipe, experiment and trainer, one entry each, described by the
config file's own header comment. ``groups=`` (conf/info.yaml) limits the listing.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.runs.resolvers import register_resolvers

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "data", "schedule", "recipe", "compute", "experiment", "trainer")
_USAGE = re.compile(r"^\s*(python|make)\b")


def header(path: Path) -> list[str]:
    """The leading comment block of a config file, without Hydra directives and usage examples."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if text.startswith("@package") or _USAGE.match(text):
            continue
        lines.append(text)
    return [line for line in lines if line]


def first_sentence(lines: list[str]) -> str:
    """Text up to the first full stop outside brackets (a trailing colon that introduced an example becomes one)."""
    text, depth = " ".join(lines), 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "." and depth == 0 and (i + 1 == len(text) or text[i + 1] == " "):
            return text[: i + 1]
    return text.rstrip(":") + "."


def compose(overrides: list[str]):
    """conf/train.yaml with ``overrides`` (inside the running entry point, or on its own in tests)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name="train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def model_facts(model: str) -> tuple[str, str]:
    """(parameter count, the paper of the network's module: first line of its docstring, up to the year). The
    network is built on the meta device: shapes only, no memory and no random initialisation."""
    import importlib

    import torch
    from hydra.utils import instantiate

    config = compose([f"model={model}"]).model.net
    with torch.device("meta"):
        net = instantiate(config)
    doc = (importlib.import_module(type(net).__module__).__doc__ or "").strip().splitlines()
    source = re.match(r"[^()]*\([^()]*\b(19|20)\d\d\)", doc[0]) if doc else None
    return f"{sum(p.numel() for p in net.parameters()):,} parameters", source.group(0) if source else ""


def schedule_summary(name: str) -> str:
    s = compose([f"schedule={name}"]).schedule
    opt = s.get("optimizer") or {}
    lr = opt.get("lr")
    stages = s.get("progressive")
    batch = (
        f"progressive batch {stages[0].batch}..{stages[-1].batch}, patch {stages[0].patch}..{stages[-1].patch}"
        if stages
        else f"batch {s.batch_size}"
    )
    return (
        f"{str(opt.get('_target_', '?')).rsplit('.', 1)[-1]} lr {lr:g}, " if lr is not None else ""
    ) + f"{s.max_steps:,} steps, {batch}"


def data_root(name: str) -> str:
    from omegaconf import OmegaConf

    data = compose([f"data={name}"]).data
    if "root" in data.keys() and OmegaConf.is_missing(data, "root"):
        return "needs data.root=DIR"
    return "built in, no download"


def entries(group: str) -> list[tuple[str, str, list[str]]]:
    """(name, short facts, description lines) per config of ``group``."""
    out = []
    for path in sorted((CONF / group).glob("*.yaml")):
        name, lines = path.stem, header(path)
        facts = ""
        if group == "model":
            facts, source = model_facts(name)
            if source and not re.search(r"\b(19|20)\d\d\b", " ".join(lines)):
                lines = [f"{first_sentence(lines)[:-1]}; from {source}."]
        elif group == "schedule":
            facts = schedule_summary(name)
        elif group == "data":
            facts = data_root(name)
        out.append((name, facts, lines if group == "data" else [first_sentence(lines)]))
    return out


def show(groups=GROUPS) -> None:
    """Print the listing of ``groups``."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"groups={list(groups)}: unknown {unknown}; choose from {', '.join(GROUPS)}")
    logging.disable(logging.WARNING)  # building networks to count their parameters logs backend choices
    try:
        for group in groups:
            print(f"\n{group}=  (conf/{group}/)")
            rows = entries(group)
            width = max(len(n) for n, _, _ in rows)
            for name, facts, lines in rows:
                head = f"  {name:<{width}}  " + (f"[{facts}] " if facts else "")
                print(head + (lines[0] if lines else ""))
                for line in lines[1:]:
                    print(" " * (width + 4) + line)
    finally:
        logging.disable(logging.NOTSET)
    print(
        "\nUse: python -m src.train model=NAME data=NAME [schedule=NAME | recipe=NAME | experiment=NAME]"
        "\nDocs: README.md, docs/howto.md, docs/models.md, docs/datasets.md, docs/protocols.md"
    )


register_resolvers()  # conf/train.yaml, composed for the listing, names them in conf/hydra


@hydra.main(version_base="1.3", config_path="../conf", config_name="info")
def main(cfg: DictConfig) -> None:
    show(list(cfg.groups))


if __name__ == "__main__":
    import signal

    if hasattr(signal, "SIGPIPE"):  # `python -m src.info | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
