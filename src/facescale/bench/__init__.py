"""facescale.bench."""
