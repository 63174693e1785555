"""``Notice``: a warning meant for the person at the console, not for the code.

The package warns with it where the user can act and the run goes on (a dataset on read-only
storage verified without a stamp, an undecodable image skipped, an index that could not be
cached). From Python it is an ordinary ``UserWarning`` (filter it, or catch it with
``pytest.warns(UserWarning)``); the console scripts print it as one plain line,
``warning: <sentence>``, without Python's file-and-line prefix (``cli/console.py``).
"""


from .errors import render


class Notice(UserWarning):
    """A warning whose message is one complete sentence for the user. Settings and fixes in it
    are marked (``errors.setting`` / ``errors.action``): ``str`` speaks them in Python's terms,
    the console scripts as overrides."""

    def __init__(self, message: str):
        # As JEPADataError: args (and repr) in Python's words, ``message`` with its marks.
        super().__init__(render(message))
        self.message = message
