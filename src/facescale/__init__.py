"""facescale: face recognition at scale (Partial FC training, evaluation, export, recognition)."""

__version__ = "0.1.0"
