"""Tests of preparation: the lock -> stamp -> fetch -> extract -> verify -> stamp sequence through prepare_data, jepa-prepare and jepa-verify."""
