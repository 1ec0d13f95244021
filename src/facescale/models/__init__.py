"""facescale.models."""
