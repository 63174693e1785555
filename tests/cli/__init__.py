"""Tests of cli/: the commands as a user runs them (inventory, outputs, mask pictures) and user apps built on the DataModules."""
