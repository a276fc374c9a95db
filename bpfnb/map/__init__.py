"""map layer."""
