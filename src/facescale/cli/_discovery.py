"""Which CLI modules exist: the listing ``facescale`` and ``facescale bench`` register from.

It lives apart from ``main`` so ``bench`` (which ``main`` imports) need not import ``main`` back.
"""

from __future__ import annotations

import pkgutil


def subcommand_modules(prefix: str = "") -> list[str]:
    """Names of the CLI modules to register, sorted; ``prefix="bench_"`` lists the benchmarks."""
    import facescale.cli as package

    names = []
    for info in pkgutil.iter_modules(package.__path__):
        name = info.name
        if name.startswith("_") or name == "main":
            continue
        if (prefix and name.startswith(prefix)) or (not prefix and not name.startswith("bench_")):
            names.append(name)
    return sorted(names)
