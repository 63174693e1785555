"""The README's commands and the smoke-test notebook, run as documented."""
