"""Benchmarks of the openconnector gateway: ``make bench`` (``python -m bench.run``).

Every figure is a ratio against a baseline measured in the same run, or a count that does not depend on
the clock; see docs/benchmarks.md for the method and the latest results.
"""
