"""Tests of bench/: jepa-bench on generated stand-ins and the mask benchmark's helpers."""
