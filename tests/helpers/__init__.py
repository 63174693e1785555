"""What the tests share: fakes in the exact upstream formats (written by the formats' own
writers), the loopback HTTP server that serves them, and the repository's paths.

Imported as ``tests.helpers.<module>`` (``pythonpath = ["."]`` in pyproject.toml's pytest
settings puts the repository root on ``sys.path``).
"""

from pathlib import Path

#: The repository root (README.md, conf/, docs/, notebooks/).
REPO = Path(__file__).resolve().parents[2]
