"""YAML as recipes and ``-o`` overrides are read: numbers as users type them, no duplicate keys, no bombs.

PyYAML follows YAML 1.1, where a float needs a dot: ``1e-3`` and ``5e-4`` would load as the
strings "1e-3" and "5e-4" and then be refused as "not a float". YAML 1.2 (and every user) reads
them as numbers, so the loader here adds that form. A key given twice in one mapping is an error
(PyYAML keeps the last silently: which ``lr`` did the author mean?). Aliases are capped: a recipe
of nested aliases (a "billion laughs") would otherwise expand into a structure whose error message
alone runs to megabytes.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from facescale.errors import ConfigError

# A hand-written recipe uses a few aliases; with 32 no nesting of them expands past ~10^5 items.
MAX_ALIASES = 32
MAX_RECIPE_BYTES = 1 << 20

# YAML 1.2 floats: 1e-3, -2E+5, 1.5e3, .5, 1., plus the YAML 1.1 forms PyYAML already knows.
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats, duplicate-key errors and an alias cap (one loader per document)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases (*name): refused as a YAML bomb", mark
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in this mapping (first at line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse one YAML document with RecipeLoader; yaml.YAMLError on bad input."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_recipe(path: Path) -> dict[str, Any]:
    """The top-level mapping of recipe ``path``; ConfigError (one line) for anything else."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise ConfigError(f"config {path} is {len(raw):,} bytes; a recipe is at most {MAX_RECIPE_BYTES:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} does not parse as YAML: {one_line(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def one_line(err: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (problem, context, a caret drawing) as one line."""
    if isinstance(err, yaml.MarkedYAMLError):
        where = (
            f"line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}"
            if err.problem_mark
            else ""
        )
        parts = [p for p in (err.context, err.problem) if p]
        return f"{where}: {'; '.join(parts)}" if where else "; ".join(parts)
    return " ".join(str(err).split())


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 6, 6, 80, 80


def short_repr(value: Any, limit: int = 120) -> str:
    """A repr of ``value`` of at most ``limit`` characters, built without expanding the whole value
    (a nest of shared lists can be small in memory and astronomically long as text)."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
