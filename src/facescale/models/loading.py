"""Load a trained backbone from whatever a user has: a run, a checkpoint, insightface or safetensors.

Accepted sources (``load_backbone``):

- a facescale run directory: ``RUN/backbone.json`` + ``RUN/backbone.pth``; without them, the
  newest checkpoint named by ``RUN/checkpoints/latest`` (its ``trainer.pt``);
- a facescale checkpoint file: a dict with ``"backbone"`` (state_dict) and ``"backbone_spec"``;
- an insightface ``backbone.pth``: a plain state_dict. The backbone name (and embedding size)
  is inferred by comparing its keys and shapes with every registered backbone, built on the
  meta device; a ``backbone.json`` beside it is used when present;
- a ``.safetensors`` file, whose metadata entry ``facescale.backbone`` holds the spec JSON
  (or whose name is given / inferred as above).

Every ``torch.load`` uses ``weights_only=True``: a checkpoint can never run code.
"""

from __future__ import annotations

import functools
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facescale.atomic import atomic_output
from facescale.errors import FacescaleError
from facescale.models.base import BACKBONES
from facescale.models.factory import BackboneSpec, build_backbone
from facescale.models.run_layout import (
    CHECKPOINTS_DIR,
    LATEST_FILE,
    SPEC_FILE,
    TRAINER_FILE,
    WEIGHTS_FILE,
    latest_step_dir,
)

SAFETENSORS_SPEC_KEY = "facescale.backbone"
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile add these to every key
SHOWN_KEYS = 5

StateDict = dict[str, torch.Tensor]


def load_backbone(
    source: str | Path, name: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, BackboneSpec]:
    """Build the backbone stored at ``source`` and load its weights strictly.

    ``name`` is the registry name for files that do not record it (insightface, bare
    safetensors); for files that do, it must agree. Returns the module in eval mode, fp32,
    on ``map_location``, and its spec. Raises FacescaleError naming the file and the first
    mismatched keys when the weights do not fit.
    """
    state, spec, where = read_backbone_file(source, name, map_location)
    spec = spec.for_inference()
    module = build_backbone(spec.name, **spec.kwargs)
    load_state_strict(module, state, where, spec.name)
    module = module.float().to(map_location)
    return module.eval(), spec


def load_initial_weights(module: nn.Module, path: str | Path) -> None:
    """Strictly load the weights in ``path`` (any source ``load_backbone`` accepts) into ``module``.

    Used for ``model.init_weights``: the module is already built from the config, so the file's
    keys and shapes must fit it exactly.
    """
    state, _, where = read_backbone_file(path, None, "cpu", need_spec=False)
    load_state_strict(module, state, where, type(module).__name__)


def read_backbone_file(
    source: str | Path,
    name: str | None = None,
    map_location: str | torch.device = "cpu",
    need_spec: bool = True,
) -> tuple[StateDict, BackboneSpec, str]:
    """(state_dict, spec, description of where it came from) for any accepted source.

    With ``need_spec=False`` an unrecorded name is not inferred: the spec comes back with an empty name
    (for callers that only need the weights).
    """
    path = Path(source)
    if not path.exists():
        raise FacescaleError(f"backbone source {path} does not exist")
    if path.is_dir():
        return _read_run_dir(path, name, map_location)
    if path.suffix == ".safetensors":
        state, spec = _read_safetensors(path, map_location)
    else:
        state, spec = _read_torch_file(path, map_location)
        if spec is None and (path.parent / SPEC_FILE).exists():
            spec = _read_spec_json(path.parent / SPEC_FILE)
    where = str(path)
    if spec is not None:
        if name is not None and name != spec.name:
            raise FacescaleError(f"{where} holds backbone {spec.name!r}, not the requested {name!r}")
        return state, spec, where
    if name is not None:
        return state, BackboneSpec(name, _embedding_kwargs(state)), where
    if not need_spec:
        return state, BackboneSpec("", {}), where
    return state, infer_spec(state, where), where


def _read_run_dir(
    run: Path, name: str | None, map_location: str | torch.device
) -> tuple[StateDict, BackboneSpec, str]:
    if (run / WEIGHTS_FILE).exists():
        return read_backbone_file(run / WEIGHTS_FILE, name, map_location)
    step_dir = latest_step_dir(run)
    if step_dir is None:
        raise FacescaleError(
            f"{run} is not a facescale run: it has neither {WEIGHTS_FILE} nor {CHECKPOINTS_DIR}/{LATEST_FILE}"
        )
    return read_backbone_file(step_dir / TRAINER_FILE, name, map_location)


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FacescaleError(f"cannot read {path} as a PyTorch weights file: {first_line}") from None


def _read_torch_file(path: Path, map_location: str | torch.device) -> tuple[StateDict, BackboneSpec | None]:
    obj = _torch_load(path, map_location)
    if isinstance(obj, Mapping) and "backbone" in obj:
        spec_data = obj.get("backbone_spec")
        spec = BackboneSpec.from_dict(spec_data, f"{path} backbone_spec") if spec_data is not None else None
        return _as_state_dict(obj["backbone"], f"{path} 'backbone'"), spec
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return _as_state_dict(obj["state_dict"], f"{path} 'state_dict'"), None
    return _as_state_dict(obj, str(path)), None


def _as_state_dict(obj: Any, where: str) -> StateDict:
    if not isinstance(obj, Mapping) or not obj:
        raise FacescaleError(f"{where} is not a state_dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise FacescaleError(f"{where} is not a state_dict: entries {bad[:SHOWN_KEYS]} are not tensors")
    state = dict(obj)
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _read_spec_json(path: Path) -> BackboneSpec:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FacescaleError(f"cannot read backbone spec {path}: {e}") from None
    return BackboneSpec.from_dict(data, str(path))


def _read_safetensors(path: Path, map_location: str | torch.device) -> tuple[StateDict, BackboneSpec | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as e:
        raise FacescaleError(f"cannot read {path} as safetensors: {e}") from None
    spec = None
    if SAFETENSORS_SPEC_KEY in metadata:
        try:
            data = json.loads(metadata[SAFETENSORS_SPEC_KEY])
        except json.JSONDecodeError as e:
            raise FacescaleError(f"{path}: metadata {SAFETENSORS_SPEC_KEY!r} is not JSON: {e}") from None
        spec = BackboneSpec.from_dict(data, f"{path} metadata {SAFETENSORS_SPEC_KEY!r}")
    return _as_state_dict(state, str(path)), spec


def save_safetensors(
    module: nn.Module, spec: BackboneSpec, path: str | Path, extra_metadata: dict[str, str] | None = None
) -> Path:
    """Write ``module``'s fp32 weights and ``spec`` (metadata) to ``path``, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in module.state_dict().items()
    }
    with atomic_output(path) as tmp:
        metadata = {SAFETENSORS_SPEC_KEY: json.dumps(spec.to_dict()), **(extra_metadata or {})}
        save_file(state, str(tmp), metadata=metadata)
    return path


def _embedding_kwargs(state: StateDict) -> dict[str, Any]:
    """``{"embedding_size": D}`` read off the last batch norm (every family ends with BN1d(D))."""
    last_var = [k for k in state if k.endswith("running_var")]
    if not last_var:
        return {}
    return {"embedding_size": int(state[last_var[-1]].shape[0])}


@functools.lru_cache(maxsize=64)
def _signature(name: str, embedding_size: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of backbone ``name`` (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        module = build_backbone(name, embedding_size=embedding_size)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _differences(state: StateDict, signature: dict[str, tuple[int, ...]]) -> list[str]:
    missing = [f"missing {k}" for k in signature if k not in state]
    unexpected = [f"unexpected {k}" for k in state if k not in signature]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {signature[k]}"
        for k, v in state.items()
        if k in signature and tuple(v.shape) != signature[k]
    ]
    return missing + unexpected + shapes


def infer_spec(state: StateDict, where: str) -> BackboneSpec:
    """The registered backbone whose keys and shapes equal ``state``'s; FacescaleError otherwise."""
    kwargs = _embedding_kwargs(state)
    embedding_size = kwargs.get("embedding_size", 512)
    scored = sorted((len(_differences(state, _signature(n, embedding_size))), n) for n in BACKBONES)
    matches = [n for diff, n in scored if diff == 0]
    if len(matches) == 1:
        return BackboneSpec(matches[0], kwargs)
    if matches:
        raise FacescaleError(
            f"{where}: the weights fit several backbones ({', '.join(matches)}); pass the name explicitly"
        )
    closest = ", ".join(f"{n} ({diff} keys differ)" for diff, n in scored[:3])
    raise FacescaleError(
        f"{where}: no registered backbone has these {len(state)} keys and shapes; "
        f"closest: {closest}. Pass the backbone name if it was trained with other options."
    )


def load_state_strict(module: nn.Module, state: StateDict, where: str, what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with an error naming the file and bad keys."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = _differences(state, expected)
    if problems:
        shown = "; ".join(problems[:SHOWN_KEYS])
        more = f" (and {len(problems) - SHOWN_KEYS} more)" if len(problems) > SHOWN_KEYS else ""
        raise FacescaleError(f"{where} does not fit backbone {what}: {shown}{more}")
    module.load_state_dict(state, strict=True)
