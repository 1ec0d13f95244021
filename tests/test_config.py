from pathlib import Path

import pytest

from facescale.config import Config, all_keys, load_config, save_config
from facescale.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_overrides_are_typed_and_applied():
    cfg = load_config(None, ["optim.lr=0.05", "data.batch_size=64", "eval.bins=[a.bin, b.bin]"])
    assert cfg.optim.lr == 0.05
    assert cfg.data.batch_size == 64
    assert cfg.eval.bins == ["a.bin", "b.bin"]


def test_int_widens_to_float_but_nothing_else_converts():
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(ConfigError, match=r"data.batch_size.*expected int"):
        load_config(None, ["data.batch_size=0.5"])
    with pytest.raises(ConfigError, match=r"train.progress.*expected bool"):
        load_config(None, ["train.progress=3"])


def test_unknown_key_names_it_and_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["optim.learning_rat=0.1"])
    assert "optim.learning_rat" in str(err.value)
    with pytest.raises(ConfigError, match=r"did you mean optim\.lr"):
        load_config(None, ["optm.lr=0.1"])


def test_unknown_key_in_recipe_names_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  momentun: 0.9\n")
    with pytest.raises(ConfigError, match=r"optim.momentun.*r.yaml.*optim.momentum"):
        load_config(recipe)


def test_choice_values_are_checked():
    with pytest.raises(ConfigError, match=r"head.update.*sparse"):
        load_config(None, ["head.update=sprase"])


def test_unparseable_yaml_is_a_config_error(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml"):
        load_config(recipe)


def test_base_recipes_layer(tmp_path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.2\ndata:\n  batch_size: 32\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ndata:\n  batch_size: 16\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.optim.lr, cfg.data.batch_size) == (0.2, 16)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["optim.lr=0.3", "head.margin.name=cosface"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_range_validation_names_the_key():
    with pytest.raises(ConfigError, match=r"head.sample_rate"):
        load_config(None, ["head.sample_rate=1.5"])


def test_all_keys_lists_nested_leaves():
    keys = all_keys()
    assert "head.margin.s" in keys and "data.augment.hflip" in keys and "head.margin" not in keys
