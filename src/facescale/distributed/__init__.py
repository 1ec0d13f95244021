"""facescale.distributed."""
