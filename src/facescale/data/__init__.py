"""facescale.data."""
