"""One contract harness per connector (`tests/contract/harness.py` says what a harness must do)."""
