"""program layer."""
