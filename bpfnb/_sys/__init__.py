"""Kernel and system-library ABI: thin ctypes layers, no policy."""
