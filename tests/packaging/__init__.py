"""The wheel, and the rules the test suite itself keeps."""
