"""The test suite, grouped by the package layer each test exercises (see tests/helpers for the fakes)."""
