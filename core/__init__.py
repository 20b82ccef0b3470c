"""Shared core: typed settings, canonical records and the runtime services every process uses."""
