"""facescale.data.synth."""
