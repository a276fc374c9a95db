"""symbols layer."""
