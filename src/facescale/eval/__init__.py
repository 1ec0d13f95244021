"""facescale.eval."""
