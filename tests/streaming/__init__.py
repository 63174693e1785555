"""Tests of streaming.py: LitData conversion and reading, of every dataset kind."""
