"""The bundle: the whole contract between the host side (torch) and the device side (no torch)."""
