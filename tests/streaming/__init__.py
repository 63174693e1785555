"""Tests of streaming/ (convert, source, cache, inputs, remote): LitData conversion and reading, of every dataset kind."""
