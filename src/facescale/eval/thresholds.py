"""Measured decision thresholds: the cosine at which a model accepts a target share of impostors.

A verification set's ROC (scores = cosine of the protocol's flip-fused, L2-normalised
embeddings) gives, for a target false accept rate FAR, the lowest cosine threshold ``t`` such
that at most ``FAR`` of the impostor pairs score ``>= t``. A FAR below one impostor pair's worth
(``1 / impostor pairs``) is not measurable and is recorded as such (``cosine: null``), never
extrapolated. The thresholds are written into ``RUN/backbone.json`` under
``verification_thresholds`` (at the end of training and by ``facescale eval``) and copied into
an ONNX export's metadata, so ``facescale gallery build`` can name people at a measured
operating point instead of a guess.

Format (per set, per FAR written as ``"1e-03"``)::

    {"val": {"1e-03": {"far": 0.001, "cosine": 0.41, "tar": 0.93, "impostor_pairs": 1500},
             "1e-04": {"far": 0.0001, "cosine": null, "tar": null, "impostor_pairs": 1500}}}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from facescale.atomic import write_text_atomic
from facescale.errors import DataError
from facescale.eval.metrics import RocCurve, roc_curve
from facescale.models.run_layout import SPEC_FILE, WEIGHTS_FILE

TARGET_FARS = (1e-3, 1e-4)
THRESHOLDS_KEY = "verification_thresholds"
ONNX_THRESHOLDS_KEY = "facescale.verification_thresholds"


def far_key(far: float) -> str:
    return f"{far:.0e}"


def threshold_at_far(curve: RocCurve, far: float, to_cosine: Any = None) -> dict[str, Any]:
    """``{"far", "cosine", "tar", "impostor_pairs"}`` for one target FAR on ``curve``.

    ``curve`` scores must be "higher = more alike"; ``to_cosine`` maps its thresholds to cosine
    (identity when None). ``cosine`` and ``tar`` are None when ``far`` is not measurable.
    """
    entry: dict[str, Any] = {
        "far": far,
        "cosine": None,
        "tar": None,
        "impostor_pairs": int(curve.num_impostor),
    }
    if not curve.measurable(far):
        return entry
    # The last ROC point whose FAR does not exceed the target: accepting scores >= its
    # threshold lets through at most far * impostors.
    index = int(np.searchsorted(curve.fpr, far, side="right")) - 1
    threshold = float(curve.thresholds[index])
    if not np.isfinite(threshold):  # only the (0, 0) start qualifies: above the best impostor
        return entry
    entry["cosine"] = float(to_cosine(threshold)) if to_cosine is not None else threshold
    entry["tar"] = float(curve.tpr[index])
    return entry


def distance_to_cosine(negative_distance: float) -> float:
    """Curve thresholds of ``-squared L2`` between unit vectors -> cosine (``|a-b|^2 = 2 - 2 cos``)."""
    return 1.0 + negative_distance / 2.0


def thresholds_from_curve(
    curve: RocCurve, fars: tuple[float, ...] = TARGET_FARS
) -> dict[str, dict[str, Any]]:
    """``{far_key: entry}`` for a verification ROC over ``-squared distance`` scores."""
    return {far_key(far): threshold_at_far(curve, far, distance_to_cosine) for far in fars}


def thresholds_from_distances(
    distances: np.ndarray, issame: np.ndarray, fars: tuple[float, ...] = TARGET_FARS
) -> dict[str, dict[str, Any]]:
    """Thresholds from pair squared distances ``[N]`` and labels ``[N]`` (the verification protocol's)."""
    return thresholds_from_curve(
        roc_curve(-np.asarray(distances, np.float64), np.asarray(issame, bool)), fars
    )


def thresholds_from_results(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per set name, from ``VerificationResult`` objects that carry their ``curve``."""
    return {name: thresholds_from_curve(r.curve) for name, r in results.items() if getattr(r, "curve", None)}


def spec_file_of(source: str | Path) -> Path | None:
    """``backbone.json`` of a run directory or of the ``backbone.pth`` beside it; None otherwise."""
    path = Path(source)
    if path.is_dir():
        return path / SPEC_FILE
    if path.name == WEIGHTS_FILE:
        return path.parent / SPEC_FILE
    return None


def write_thresholds(source: str | Path, thresholds: dict[str, dict[str, dict[str, Any]]]) -> Path | None:
    """Merge ``thresholds`` (per set) into the ``backbone.json`` of ``source`` (a run directory or its
    ``backbone.pth``); None when it has none (a checkpoint, an ONNX file: nothing is written)."""
    path = spec_file_of(source)
    if path is None or not path.is_file() or not thresholds:
        return None
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot update the verification thresholds: {e}") from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(spec).__name__}")
    merged = dict(spec.get(THRESHOLDS_KEY) or {})
    merged.update(thresholds)
    spec[THRESHOLDS_KEY] = merged
    write_text_atomic(path, json.dumps(spec, indent=2) + "\n")
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid(thresholds: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(thresholds, dict) or not all(
        isinstance(v, dict) and all(isinstance(e, dict) for e in v.values()) for v in thresholds.values()
    ):
        raise DataError(f"{where}: {THRESHOLDS_KEY} is not {{set: {{far: {{...}}}}}}")
    for name, per_far in thresholds.items():
        for key, entry in per_far.items():
            # a hand-edited or crafted file: name the entry instead of a ValueError from float()
            bad = [f for f in ("cosine", "far") if entry.get(f) is not None and not _is_number(entry.get(f))]
            try:
                float(key)
            except ValueError:
                bad.append("its FAR key")
            if bad:
                raise DataError(
                    f"{where}: {THRESHOLDS_KEY}[{name!r}][{key!r}]: {', '.join(bad)} is not a finite number"
                )
    return thresholds


def read_thresholds(source: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The thresholds recorded with a model: ``RUN/backbone.json`` (for a run directory or a file
    beside one) or an ONNX model's metadata; ``{}`` when it has none."""
    path = Path(source)
    if path.suffix.lower() == ".onnx" and path.is_file():
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # a truncated or foreign file: name it instead of a protobuf traceback
            raise DataError(f"{path} is not a readable ONNX model: {e}") from None
        props = {p.key: p.value for p in model.metadata_props}
        if ONNX_THRESHOLDS_KEY not in props:
            return {}
        try:
            return _valid(json.loads(props[ONNX_THRESHOLDS_KEY]), str(path))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: metadata {ONNX_THRESHOLDS_KEY} is not JSON: {e}") from None
    spec = spec_file_of(path)
    if spec is None or not spec.is_file():
        return {}
    try:
        data = json.loads(spec.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{spec}: cannot read the verification thresholds: {e}") from None
    return _valid(data.get(THRESHOLDS_KEY) or {}, str(spec)) if isinstance(data, dict) else {}


def pick_threshold(
    thresholds: dict[str, dict[str, dict[str, Any]]], far: float | None = None
) -> tuple[float, str] | None:
    """(cosine, "FAR=1e-04 on val") at ``far`` (default: the lowest measured FAR), the strictest
    (highest) over the sets that measured it; None when no set measured one."""
    fars = [far] if far is not None else sorted(TARGET_FARS)
    for target in fars:
        found = [
            (float(entry["cosine"]), name)
            for name, per_far in thresholds.items()
            for key, entry in per_far.items()
            if entry.get("cosine") is not None and float(entry.get("far", float(key))) == target
        ]
        if found:
            cosine, name = max(found)
            return cosine, f"FAR={far_key(target)} on {name}"
    return None
