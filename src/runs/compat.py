"""Every private API of Lightning, Hydra and submitit that the suite uses, in this one module.

Libraries rename or remove their private names between releases without notice. The suite uses a few where no
public way does what it needs; each is reached through here only, and :func:`check` (run by
``tests/runs/test_compat.py``) names the one that moved when an upgrade breaks it. Checked against the versions in
:data:`CHECKED_WITH`.

Classes (:data:`PRIVATE_CLASSES`; imported on first use, so ``from src.runs.compat import BasicSweeper`` in a
Hydra plugin does not import Lightning):

* ``MultiProcessingLauncher`` (Lightning's spawn/fork launcher): :func:`src.runs.trainer.build_trainer` refuses
  strategies that use it (their results do not come back to the main process).
* ``SubprocessScriptLauncher`` (Lightning's DDP launcher): :mod:`src.runs.ddp` subclasses it so that DDP ranks run
  the current Hydra job, overriding its private hooks listed in :data:`OVERRIDDEN`.
* ``BasicSweeper`` (Hydra's default sweeper, under ``hydra._internal``): the listing sweeper subclasses it;
  :mod:`src.table` expands a sweep's jobs as it does.

Private attributes, each behind one function below: the SLURM environment of a trainer, whether Lightning will
validate after this step, the step a ModelCheckpoint last saved at, the CSV logger's writer, a failed Hydra job's
exception, the sweeper's ``params``, submitit's sbatch text, and the W&B logger's ``wandb.init`` arguments
(src/runs/logs.py).
:func:`quiet_known_noise` silences two messages these versions print on every run.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import Any

#: the versions every entry below was checked against
CHECKED_WITH = {
    "lightning": "2.6.6",
    "hydra-core": "1.3.8",
    "hydra-submitit-launcher": "1.2.0",
    "submitit": "1.5.4",
    "torch": "2.13.0",
}

#: name here -> (module, name there, who uses it)
PRIVATE_CLASSES = {
    "MultiProcessingLauncher": (
        "lightning.pytorch.strategies.launchers",
        "_MultiProcessingLauncher",
        "src/runs/trainer.py",
    ),
    "SubprocessScriptLauncher": (
        "lightning.pytorch.strategies.launchers.subprocess_script",
        "_SubprocessScriptLauncher",
        "src/runs/ddp.py",
    ),
    "BasicSweeper": (
        "hydra._internal.core_plugins.basic_sweeper",
        "BasicSweeper",
        "hydra_plugins/derain_sweeper, src/table/read.py",
    ),
}

#: private methods and attributes that suite subclasses override or call: (module, class, name, who)
OVERRIDDEN = (
    (
        "lightning.pytorch.strategies.launchers.subprocess_script",
        "_SubprocessScriptLauncher",
        "_call_children_scripts",
        "src/runs/ddp.py",
    ),
    (
        "lightning.pytorch.strategies.launchers.subprocess_script",
        "_SubprocessScriptLauncher",
        "_check_can_spawn_children",
        "src/runs/ddp.py",
    ),
    ("lightning.pytorch.strategies", "DDPStrategy", "_configure_launcher", "src/runs/ddp.py"),
    ("lightning.pytorch.loggers.csv_logs", "ExperimentWriter", "_check_log_dir_exists", "src/runs/logs.py"),
    ("hydra._internal.core_plugins.basic_sweeper", "BasicSweeper", "_parse_config", "hydra_plugins/derain_sweeper"),
    ("submitit.slurm.slurm", "SlurmExecutor", "_make_submission_file_text", "src/runs/launchers.py"),
)


def __getattr__(name: str) -> Any:
    if name not in PRIVATE_CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr, _ = PRIVATE_CLASSES[name]
    return getattr(importlib.import_module(module), attr)


# --- private attributes, one function each -------------------------------------------------------------------


def cluster_environment(trainer) -> Any:
    """The cluster environment Lightning chose (SLURMEnvironment on SLURM): decides whether to requeue."""
    return trainer._accelerator_connector.cluster_environment


def validation_due(trainer) -> bool:
    """Whether Lightning validates right after the current training step (its own decision)."""
    loop = trainer.fit_loop
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))


def last_step_saved(callback) -> int:
    """The global step at which a ModelCheckpoint last wrote its file (-1: never)."""
    return getattr(callback, "_last_global_step_saved", -1)


def appending_csv_writer(logger, header: list[str]) -> None:
    """Make a Lightning ``CSVLogger`` append to its ``metrics.csv`` (with ``header``) instead of replacing it, as
    it does when its folder is not empty."""
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class AppendingWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:  # keep the file: this run continues it
            pass

    writer = AppendingWriter(log_dir=logger.log_dir)
    writer.metrics_keys = header
    logger._experiment = writer


def job_error(job_return) -> Any:
    """The exception of a failed Hydra job (``JobReturn.return_value`` re-raises it instead)."""
    return job_return._return_value


def sweeper_params(sweeper) -> list[str]:
    """The ``hydra.sweeper.params`` of a basic sweeper as override strings."""
    return sweeper._parse_config()


def sbatch_text(executor, command: str) -> str:
    """The sbatch script a submitit SLURM ``AutoExecutor`` would submit for ``command``."""
    return executor._executor._make_submission_file_text(command, "job")


def drop_wandb_init_arg(logger, key: str) -> None:
    """Remove an argument Lightning's ``WandbLogger`` passes to ``wandb.init``."""
    logger._wandb_init.pop(key, None)


# --- console noise of these versions --------------------------------------------------------------------------


class _DropLitloggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_known_noise() -> None:
    """Silence what every run would otherwise print: Lightning 2.6's "Tip: ... litlogger" advertisement (once per
    Trainer) and the ``LeafSpec`` deprecation warning that Lightning's pytree helper triggers in torch 2.13."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLitloggerTip) for f in logger.filters):
            logger.addFilter(_DropLitloggerTip())


# --- the check ------------------------------------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package, checked in CHECKED_WITH.items():
        try:
            found.append(f"{package} {version(package)} (checked: {checked})")
        except PackageNotFoundError:
            found.append(f"{package} not installed (checked: {checked})")
    return ", ".join(found)


def _instances() -> dict[str, Any]:
    """Small objects whose private attributes the accessors read (nothing is trained, nothing submitted)."""
    import tempfile

    import lightning as L
    from hydra.core.utils import JobReturn
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    folder = tempfile.mkdtemp(prefix="suite-compat-")
    return {
        "trainer": trainer,
        "checkpoint": ModelCheckpoint(dirpath=folder),
        "job": JobReturn(),
        "csv": CSVLogger(folder, name="csv", version=""),
        "wandb": WandbLogger(save_dir=folder, offline=True),
    }


def _attribute_problems() -> list[str]:
    objects = _instances()
    wanted = [
        ("trainer", "_accelerator_connector.cluster_environment", "cluster_environment"),
        ("trainer", "fit_loop.epoch_loop._should_check_val_fx", "validation_due"),
        ("trainer", "fit_loop._data_fetcher", "validation_due"),
        ("checkpoint", "_last_global_step_saved", "last_step_saved"),
        ("csv", "_experiment", "appending_csv_writer"),
        ("job", "_return_value", "job_error"),
        ("wandb", "_wandb_init", "drop_wandb_init_arg"),
    ]
    problems = []
    for owner, path, user in wanted:
        node, ok = objects[owner], True
        for part in path.split("."):
            if not hasattr(node, part):
                ok = False
                break
            node = getattr(node, part)
        if not ok:
            problems.append(f"{type(objects[owner]).__name__}.{path} is gone (used by compat.{user})")
    return problems


def check() -> list[str]:
    """What of the above no longer exists in the installed versions (empty: all there), each naming its user."""
    problems = []
    for name, (module, attr, user) in PRIVATE_CLASSES.items():
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            problems.append(f"{module}.{attr} is gone ({type(err).__name__}; used by {user} as compat.{name})")
    for module, owner, attr, user in OVERRIDDEN:
        try:
            cls = getattr(importlib.import_module(module), owner)
        except (ImportError, AttributeError) as err:
            problems.append(f"{module}.{owner} is gone ({type(err).__name__}; {user} overrides its {attr})")
            continue
        if not callable(getattr(cls, attr, None)):
            problems.append(f"{module}.{owner}.{attr} is gone ({user} overrides or calls it)")
    problems += _attribute_problems()
    if problems:
        problems.append(f"installed: {_versions()}; update src/runs/compat.py and the users named above")
    return problems
