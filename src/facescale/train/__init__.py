"""facescale.train."""
