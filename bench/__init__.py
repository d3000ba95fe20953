"""`make bench`: the performance harness (see bench/run.py); never part of `make test`."""
