"""facescale.cli."""
