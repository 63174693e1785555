"""``streaming/inputs.py``: the DataModule's ``format`` and ``input`` arguments, where a bad
combination (an unknown format, litdata without an input, an input without litdata) says what
is allowed."""

from __future__ import annotations

import pytest

from tests.helpers.litdata import synthetic


@pytest.mark.parametrize("kwargs, message", [
    (dict(format="tfrecord"), r"Unknown value 'tfrecord' for argument format. Valid values are \{files, litdata\}"),
    (dict(format="litdata"), r"input=None is invalid with format='litdata'; allowed is the folder or URL .* given as "
                             r"output to `convert_to_litdata\(dm, output\)`"),
    (dict(input="s3://bucket/x"), r"input='s3://bucket/x' is only read with format='litdata'"),
])
def test_bad_format_arguments_say_what_is_allowed(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic(tmp_path, **kwargs)
