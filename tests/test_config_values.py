"""Values as users type them: numbers in any notation, ranges checked at load, hostile YAML in one line."""

from __future__ import annotations

import pytest

from facescale.config import load_config
from facescale.errors import ConfigError


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("optim.lr=1e-3", "lr", 1e-3),
        ("optim.weight_decay=5e-4", "weight_decay", 5e-4),
        ("optim.lr=1E-2", "lr", 1e-2),
        ("optim.lr=2.5e-1", "lr", 0.25),
        ("optim.lr=.05", "lr", 0.05),
        ("optim.lr=+1e-1", "lr", 0.1),
    ],
)
def test_numbers_in_any_usual_notation_are_numbers(override, key, value):
    assert getattr(load_config(None, [override]).optim, key) == pytest.approx(value)


def test_exponent_floats_in_a_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5e-4\n")
    cfg = load_config(recipe)
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (1e-3, 5e-4)


def test_whole_numbers_in_float_notation_fill_int_keys():
    assert load_config(None, ["train.max_steps=1e5"]).train.max_steps == 100_000
    with pytest.raises(ConfigError, match=r"train.max_steps.*expected int"):
        load_config(None, ["train.max_steps=1.5e0"])


def test_strings_stay_strings():
    assert load_config(None, ["train.output=runs/1e3"]).train.output == "runs/1e3"
    assert load_config(None, ["train.output=runs/a:b"]).train.output == "runs/a:b"


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.log_every=0", "train.log_every"),
        ("optim.weight_decay=-1e-4", "optim.weight_decay"),
        ("optim.warmup_epochs=-1", "optim.warmup_epochs"),
        ("train.max_steps=-5", "train.max_steps"),
        ("train.seed=-1", "train.seed"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("train.save_every=-1", "train.save_every"),
        ("optim.power=-2", "optim.power"),
        ("optim.momentum=5", "optim.momentum"),
        ("optim.clip_grad_norm=-1", "optim.clip_grad_norm"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints"),
        ("train.eval_every=-1", "train.eval_every"),
        ("data.prefetch=0", "data.prefetch"),
        ("data.augment.blur=1.5", "data.augment.blur"),
        ("model.dropout=1.0", "model.dropout"),
        ("head.margin.s=0", "head.margin.s"),
        ("head.margin.m2=4", "head.margin.m2"),
        ("optim.lr=.nan", "optim.lr"),
        ("optim.lr=.inf", "optim.lr"),
        ("optim.clip_grad_norm=.inf", "optim.clip_grad_norm"),
        ("train.device=gpu", "train.device"),
        ("optim.lr_batch_size=-512", "optim.lr_batch_size"),
    ],
)
def test_out_of_range_values_fail_at_load_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        load_config(None, [override, "eval.bins=[x.bin]"])


def test_output_naming_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"'train.output'.*names a file"):
        load_config(None, [f"train.output={tmp_path / 'f'}"])


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text("optim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml.*line 4.*'lr' appears twice.*line 2"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"appears twice"):
        load_config(None, ["optim={lr: 0.1, lr: 0.2}"])


def test_non_utf8_recipe_is_one_line(tmp_path):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("train:\n  output: runs/caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml is not UTF-8 text \(byte 0xe9 at offset 25\)") as err:
        load_config(recipe)
    assert "\n" not in str(err.value)


def test_deep_base_chain_is_one_line(tmp_path):
    for i in range(200):
        (tmp_path / f"r{i}.yaml").write_text(f"_base_: r{i + 1}.yaml\n")
    (tmp_path / "r200.yaml").write_text("optim:\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"_base_ chain is more than 16 files deep") as err:
        load_config(tmp_path / "r0.yaml")
    assert "\n" not in str(err.value)
    # a chain within the limit layers normally
    assert load_config(tmp_path / "r190.yaml").optim.lr == 0.2


def test_yaml_alias_bomb_is_one_short_line(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(lines) + "\ntrain:\n  output: *i\n")
    with pytest.raises(ConfigError, match=r"bomb.yaml.*aliases") as err:
        load_config(recipe)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_a_huge_wrong_value_gives_a_short_message(tmp_path):
    recipe = tmp_path / "big.yaml"
    recipe.write_text("train:\n  output: [" + ", ".join(["x" * 50] * 5000) + "]\n")
    with pytest.raises(ConfigError, match=r"train.output") as err:
        load_config(recipe)
    assert len(str(err.value)) < 400


def test_an_alias_bomb_in_an_override_is_one_line():
    levels = ["&a [x, x, x, x, x, x, x, x]"] + [
        f"&{c} [{', '.join([f'*{p}'] * 8)}]" for p, c in zip("abcdefg", "bcdefgh")
    ]
    bomb = "[" + ", ".join(levels) + "]"
    with pytest.raises(ConfigError, match=r"override .*aliases") as err:
        load_config(None, [f"train.output={bomb}"])
    assert "\n" not in str(err.value) and len(str(err.value)) < 1000
