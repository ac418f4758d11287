"""Recipes (recipes/*.toml) and the flags derived from the training config dataclasses."""

import argparse
import json
from dataclasses import fields

import pytest

from helpers import REPO, model_card_tool
from dpexplorer.cli import build_parser
from dpexplorer.training.codec import CodecTrainConfig
from dpexplorer.training.guard import GuardTrainConfig
from dpexplorer.training.common import add_config_arguments, configs_from_args, load_recipe, recipe_configs
from dpexplorer.training.latent import LatentTrainConfig
from dpexplorer.training.pixel import PixelTrainConfig
from dpexplorer.training.synthesis import SynthesisTrainConfig

CONFIGS = {"codec": CodecTrainConfig, "latent": LatentTrainConfig, "synthesis": SynthesisTrainConfig,
           "pixel": PixelTrainConfig, "guard": GuardTrainConfig}


def _parse(config_cls, argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p, config_cls)
    return configs_from_args(p.parse_args(argv), config_cls)


def _as_flags(cfg) -> list[str]:
    flags = []
    for f in fields(cfg):
        value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            flags += [flag, str(value)]
    return flags


@pytest.mark.parametrize("config_cls", CONFIGS.values())
def test_every_field_is_a_flag_with_the_dataclass_default(config_cls):
    (cfg,) = _parse(config_cls, ["--data", "d", "--quality", "2"])
    assert cfg == config_cls(data="d", quality=2)


def test_recipe_round_trip_file_config_flags(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "latent-x-q2"\n[config]\ndata = "photos"\nquality = 2\nw_mse = 0.2\n'
                      'rate_slack = 1\naux_only = true\nrun_name = "abl"\n')
    (cfg,) = _parse(LatentTrainConfig, ["--recipe", str(recipe)])
    assert (cfg.w_mse, cfg.rate_slack, cfg.aux_only, cfg.run_name) == (0.2, 1.0, True, "abl")
    assert isinstance(cfg.rate_slack, float) and cfg.diffusion_steps == LatentTrainConfig.diffusion_steps
    assert _parse(LatentTrainConfig, _as_flags(cfg)) == [cfg]  # config → flags → the same config


def test_a_flag_overrides_the_recipe_in_every_phase():
    args = build_parser().parse_args(["train", "codec", "--recipe", str(REPO / "recipes/codec-q3.toml"),
                                      "--lr", "3e-4", "--workdir", "/tmp/elsewhere"])
    from dpexplorer.training.codec import configs_from

    phases = configs_from(args)
    assert [p.steps for p in phases] == [4500, 12000, 19500]  # the recipe's phases
    assert {p.lr for p in phases} == {3e-4} and {p.workdir for p in phases} == {"/tmp/elsewhere"}
    args = build_parser().parse_args(["train", "latent", "--recipe", str(REPO / "recipes/latent-q3.toml"),
                                      "--w-mse", "0.3", "--no-export"])
    from dpexplorer.training.latent import configs_from as latent_configs

    assert [(p.w_mse, p.rho) for p in latent_configs(args)] == [(0.3, 0.0), (0.3, 0.5), (0.3, 0.5)]


def test_ranks_keep_the_global_batch(monkeypatch):
    recipe = {"config": {"data": "d", "quality": 1, "batch": 4, "ranks": 2}}
    assert recipe_configs(CodecTrainConfig, recipe)[0].batch == 8  # one process: 2 × 4
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert recipe_configs(CodecTrainConfig, recipe)[0].batch == 4
    assert recipe_configs(CodecTrainConfig, recipe, {"batch": 3})[0].batch == 3  # a flag wins


@pytest.mark.parametrize("recipe, message", [
    ({"config": {"data": "d", "quality": 1, "w_msee": 0.1}}, "w_msee"),
    ({"config": {"data": "d", "quality": "1"}}, "quality = '1' is not a int"),
    ({"config": {"data": "d"}}, "missing --quality"),
])
def test_bad_recipes_are_one_clear_error(recipe, message):
    with pytest.raises(ValueError, match=message):
        recipe_configs(LatentTrainConfig, recipe)


def test_bad_recipe_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[config\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_recipe(bad)
    bad.write_text("steps = 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_recipe(bad)


def test_every_shipped_model_points_to_its_recipe():
    """Each manifest entry names a recipe that exists, parses into its kind's config and says what the
    manifest records of the run (quality, steps, loss weights, ρ)."""
    models = [e for m in ("weights/manifest.json", "weights/candidate/manifest.json")  # candidate: not shipped
              for e in json.loads((REPO / m).read_text())["models"].items()]
    assert models
    for name, entry in models:
        recipe = load_recipe(REPO / entry["recipe"])
        assert recipe["model"] == name
        phases = recipe_configs(CONFIGS[entry["kind"]], recipe)
        last, training = phases[-1], entry.get("training", {})
        assert last.quality == entry["quality"] and last.arch in (None, entry["arch"])
        if entry["kind"] == "codec":
            assert last.steps == training["steps"]
            assert all(p.quality == entry["quality"] for p in phases)
            if refit := entry.get("plain_refit"):  # its g_s refit to the rounded ŷ: a synthesis run
                recipe = load_recipe(REPO / refit["recipe"])
                assert recipe["model"] == name
                (cfg,) = recipe_configs(SynthesisTrainConfig, recipe)
                assert cfg.quality == entry["quality"] and cfg.steps == refit["steps"]
                assert {k: getattr(cfg, k) for k in refit["config"]} == refit["config"]
        if entry["kind"] == "latent":
            assert (last.aux_steps, last.diffusion_steps, last.rho) == (
                training["aux_steps"], training["diffusion_steps"], training["rho"])
            assert last.loss_weights() == training["weights"]
            assert last.width == entry["config"]["width"] and last.blocks == entry["config"]["blocks"]
            assert last.strength == entry["config"].get("strength", 1.0)
            assert last.through_synthesis == ("synthesis_sha256" in entry)
        if entry["kind"] == "guard":
            assert {k: getattr(last, k) for k in training["config"] if k != "out"} == {
                k: v for k, v in training["config"].items() if k != "out"}
        if entry["kind"] in ("synthesis", "pixel"):
            assert last.steps == training["steps"]
            assert {k: getattr(last, k) for k in training["config"] if k != "arch"} == {
                k: v for k, v in training["config"].items() if k != "arch"}


def test_the_model_card_is_generated_from_the_manifest_and_recipes(monkeypatch):
    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    tool = model_card_tool()
    card = tool.render_model_card(REPO / "weights")
    assert card == (REPO / "weights/README.md").read_text(), "run python tools/model_card.py"
    assert "`recipes/latent-q3.toml`" in card and "w_mse 0.15" in card
    assert tool.main(["--check", "--weights", str(REPO / "weights")]) == 0
