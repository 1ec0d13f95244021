"""`facescale train` on bad input: one clear message naming the culprit, non-zero exit, no traceback."""

from __future__ import annotations

import subprocess

import pytest


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lerning_rate=0.1", "optim.lr"),
        ("data.batch_size=big", "data.batch_size"),
        ("nosuch.key=1", "nosuch"),
    ],
)
def test_bad_override_exits_2_and_names_the_key(facescale_cmd, override, needle):
    proc = run([*facescale_cmd, "train", "-o", override])
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unparseable_recipe_exits_2(facescale_cmd, tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("data: {root: [\n")
    proc = run([*facescale_cmd, "train", "-c", str(recipe)])
    assert proc.returncode == 2 and "broken.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_names_the_folder(facescale_cmd, tmp_path):
    missing = tmp_path / "no_such_dataset"
    proc = run(
        [*facescale_cmd, "train", "-o", f"data.root={missing}", "-o", f"train.output={tmp_path / 'run'}"]
    )
    assert proc.returncode == 1
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_of_a_non_run_is_refused(facescale_cmd, tmp_path):
    proc = run([*facescale_cmd, "train", "--resume", str(tmp_path)])
    assert proc.returncode == 2 and "config.yaml" in proc.stderr


def test_help_lists_the_config_keys(facescale_cmd):
    proc = run([*facescale_cmd, "train", "--help"])
    assert proc.returncode == 0 and "head: sample_rate" in proc.stdout and "--resume" in proc.stdout
