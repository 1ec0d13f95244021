"""facescale.heads."""
