"""Every configured key is honoured or refused: margins, keys that only matter under another, peers' names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from facescale.cli.main import main
from facescale.config import UNUSED_WHEN, Config, MarginConfig, all_keys, get_key, load_config
from facescale.config_peers import ARCFACE_TORCH, PLSC, SYNONYMS
from facescale.errors import ConfigError
from facescale.heads.margins import CombinedMargin, build_margin

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "facescale"


def test_synth_demo_style_arcface_trains_at_the_m2_it_sets(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("head:\n  margin:\n    name: arcface\n    s: 32.0\n    m2: 0.3\n")
    assert build_margin(load_config(recipe).head.margin) == CombinedMargin(32.0, 1.0, 0.3, 0.0)


def test_cosface_takes_m3_from_an_override():
    cfg = load_config(ROOT / "configs" / "glint360k_r100_pfc01.yaml", ["head.margin.m3=0.35"])
    assert build_margin(cfg.head.margin) == CombinedMargin(64.0, 1.0, 0.0, 0.35)


def test_named_margins_default_to_their_standard_values_and_save_them():
    assert load_config(None, ["head.margin.name=cosface"]).head.margin == MarginConfig(
        name="cosface", m1=1.0, m2=0.0, m3=0.4
    )
    assert load_config(None).head.margin == MarginConfig(name="arcface", m1=1.0, m2=0.5, m3=0.0)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["head.margin.m3=0.35"], "head.margin.m3"),  # arcface has no m3
        (["head.margin.m1=1.2"], "head.margin.m1"),
        (["head.margin.name=cosface", "head.margin.m2=0.5"], "head.margin.m2"),
        (["head.margin.name=cosface", "head.margin.m1=0.9"], "head.margin.m1"),
    ],
)
def test_a_margin_value_the_named_margin_does_not_use_is_refused(overrides, key):
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}'.*not used by the"):
        load_config(None, overrides)


def test_combined_uses_all_three():
    cfg = load_config(None, ["head.margin.name=combined", "head.margin.m1=0.9", "head.margin.m3=0.1"])
    assert build_margin(cfg.head.margin) == CombinedMargin(64.0, 0.9, 0.5, 0.1)


def test_cli_exits_2_naming_the_unused_margin_key(capsys):
    assert main(["train", "-o", "head.margin.m3=0.35", "-o", "train.output=/nonexistent/x"]) == 2
    assert "head.margin.m3" in capsys.readouterr().err


# Where each conditional key is unused, and a value other than its default to set there.
UNUSED_CASES = {
    "optim.momentum": (["optim.name=adamw"], "optim.momentum=0.8"),
    "optim.betas": ([], "optim.betas=[0.8, 0.99]"),
    "train.eval_every": ([], "train.eval_every=100"),
    "eval.batch_size": ([], "eval.batch_size=64"),
    "eval.flip": ([], "eval.flip=false"),
    "data.prefetch": (["data.num_workers=0"], "data.prefetch=4"),
}


def test_every_conditional_key_has_a_case():
    assert set(UNUSED_CASES) == {key for key, _ in UNUSED_WHEN}


@pytest.mark.parametrize("key", sorted(UNUSED_CASES))
def test_a_key_set_where_it_has_no_effect_is_refused(key):
    context, setting = UNUSED_CASES[key]
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}'.*has no effect because"):
        load_config(None, [*context, setting])
    # ... and the same value is accepted where the key is used
    used = {
        "optim.momentum": [],
        "optim.betas": ["optim.name=adamw"],
        "data.prefetch": ["data.num_workers=1"],
    }.get(key, ["eval.bins=[x.bin]"])
    load_config(None, [*used, setting])


def _read_in_source(leaf: str) -> bool:
    """Does any module but config.py read attribute ``leaf`` (``cfg.x.leaf`` or ``x.leaf``)?"""
    pattern = re.compile(rf"\.{re.escape(leaf)}\b(?!\s*=[^=])")
    for path in SRC.rglob("*.py"):
        if path.name in ("config.py", "config_peers.py", "config_yaml.py"):
            continue
        if pattern.search(path.read_text()):
            return True
    return False


def test_the_schema_walk_every_key_is_read_or_checked_where_unused():
    """A key nobody reads, or that only matters under another key without saying so, fails here.

    Keys in UNUSED_WHEN are refused where they have no effect (tested above); model.* options go
    through models.factory.config_kwargs, which refuses those the backbone lacks; the margin's m1,
    m2, m3 through config.margin_params. Every other key must be read somewhere in the package.
    """
    from facescale.models.factory import CONFIG_OPTIONS

    checked = {key for key, _ in UNUSED_WHEN} | {"head.margin.m1", "head.margin.m2", "head.margin.m3"}
    checked |= {f"model.{name}" for name in CONFIG_OPTIONS}
    unread = [key for key in all_keys() if key not in checked and not _read_in_source(key.rsplit(".", 1)[-1])]
    assert unread == []


@pytest.mark.parametrize(
    "override, hint",
    [
        ("optim.learning_rate=0.1", "optim.lr"),
        ("train.fp16=true", "train.precision"),
        ("config.lr=0.1", "optim.lr"),
        ("config.sample_rate=0.1", "head.sample_rate"),
        ("config.margin_list=[1.0, 0.5, 0.0]", "head.margin.m1"),
        ("config.num_classes=93431", "data.num_classes"),
        ("Global.epochs=20", "train.epochs"),
        ("FP16.level=O1", "train.precision"),
        ("Model.pfc_config.sample_ratio=0.1", "head.sample_rate"),
    ],
)
def test_peer_names_get_did_you_mean(override, hint):
    with pytest.raises(ConfigError, match=rf"did you mean {re.escape(hint)}"):
        load_config(None, [override])


def test_a_plsc_recipe_lists_every_key_with_ours(tmp_path):
    recipe = tmp_path / "plsc.yaml"
    recipe.write_text(
        "Global:\n  epochs: 20\n  output_dir: ./output/\nFP16:\n  level: O1\n"
        "Loss:\n  Train:\n    - MarginLoss:\n        m2: 0.5\n        s: 64.0\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    text = str(err.value)
    for peer, ours in [
        ("Global.epochs", "train.epochs"),
        ("Global.output_dir", "train.output"),
        ("FP16.level", "train.precision"),
        ("Loss.Train.MarginLoss.m2", "head.margin.m2"),
    ]:
        assert f"'{peer}'; did you mean {ours}" in text
    assert "\n" not in text


def test_the_migration_table_lists_every_peer_name_and_only_real_keys():
    doc = (ROOT / "docs" / "migrating.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+?) \|$", doc, flags=re.M))
    for name, ours in {**{f"config.{k}": v for k, v in ARCFACE_TORCH.items()}, **PLSC}.items():
        assert name in rows, name
        assert rows[name] == ours.replace("|", "\\|"), name
    real = set(all_keys())
    assert set(SYNONYMS.values()) <= real
    for ours in rows.values():
        for key in re.findall(r"\b(?:data|model|head|optim|train|eval)\.[a-z_.0-9]+[a-z0-9_]", ours):
            assert key in real, key


def test_get_key_reads_dotted_keys():
    assert get_key(Config(), "head.margin.s") == 64.0


def test_every_margin_name_has_its_parameters():
    from facescale.config import CHOICES, MARGIN_STANDARD, MARGIN_USES
    from facescale.heads.margins import MARGINS

    assert (
        set(MARGIN_STANDARD) == set(MARGIN_USES) == set(CHOICES["head.margin.name"]) == set(MARGINS.names())
    )
