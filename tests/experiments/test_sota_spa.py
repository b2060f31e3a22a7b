"""experiment=sota_spa / sota_spa_smoke: what each job of the sweeps composes to."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import CONF

SOTA = ["spanet", "restormer", "drsformer_spa", "nerd_rain", "nerd_rain_s", "nafnet", "prenet"]
# recipe -> (model, schedule) of each job
JOBS = {"spanet": ("spanet", "spanet_paper"), "restormer": ("restormer", "restormer"),
        "drsformer_spa": ("drsformer_spa", "drsformer"), "nerd_rain": ("nerd_rain", "nerd_rain"),
        "nerd_rain_s": ("nerd_rain_s", "nerd_rain"), "nafnet": ("nafnet", "nafnet"), "prenet": ("prenet", "prenet")}


def _compose(*overrides):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _available(recipe: str) -> bool:
    """The model configs of today's derainers arrive with their networks; until then their jobs cannot compose."""
    return (CONF / "model" / f"{JOBS[recipe][0]}.yaml").is_file()


def test_sweeps_list_spanet_and_the_five_families_with_their_recipes():
    cfg = _compose("experiment=sota_spa", "data.root=/data")
    params = cfg.hydra.sweeper.params
    assert params.recipe.split(",") == SOTA and params.seed == "1,2,3"
    smoke = _compose("experiment=sota_spa_smoke").hydra.sweeper.params
    assert smoke.recipe.split(",") == ["spanet"] + [f"{r}_smoke" for r in SOTA[1:]]
    for recipe in SOTA[1:]:
        assert (CONF / "recipe" / f"{recipe}.yaml").is_file() and (CONF / "recipe" / f"{recipe}_smoke.yaml").is_file()


@pytest.mark.parametrize("recipe", SOTA)
def test_each_sota_spa_job_trains_its_recipe_on_spa_data_and_tests_the_final_weights(recipe):
    if not _available(recipe):
        pytest.skip(f"conf/model/{JOBS[recipe][0]}.yaml is not in this checkout yet")
    cfg = _compose("experiment=sota_spa", f"recipe={recipe}", "data.root=/data")
    choices = cfg.hydra.runtime.choices
    assert (choices.model, choices.schedule, choices.data, choices.compute) == (*JOBS[recipe], "realrain", "authors")
    assert cfg.test_ckpt == "last" and cfg.data.val_scenes == 0 and cfg.callbacks.model_checkpoint is None
    assert cfg.data.batch_size == cfg.schedule.batch_size and cfg.trainer.max_steps == cfg.schedule.max_steps


@pytest.mark.parametrize("recipe", SOTA)
def test_each_smoke_job_is_cpu_sized(recipe):
    if not _available(recipe):
        pytest.skip(f"conf/model/{JOBS[recipe][0]}.yaml is not in this checkout yet")
    job = recipe if recipe == "spanet" else f"{recipe}_smoke"
    cfg = _compose("experiment=sota_spa_smoke", f"recipe={job}")
    assert (cfg.hydra.runtime.choices.model, cfg.hydra.runtime.choices.data) == (JOBS[recipe][0], "synthetic")
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.max_steps == 20 and cfg.data.train_patch is None
    if cfg.data.progressive:
        assert cfg.data.batch_size == cfg.data.progressive[0].batch and cfg.data.progressive[-1].until == 20
    else:
        assert (cfg.data.batch_size, cfg.data.patch_size) == (4, 32)
