"""Development checks run by ``.ci/run`` (not shipped in the wheel)."""
