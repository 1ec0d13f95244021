"""facescale.deploy."""
