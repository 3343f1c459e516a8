"""The performance harness behind `make bench` (entry point: benchmarks/run.py).

Parts: notebooks (headless runs), widgets (explorer interaction latency), reference
(normlab.functional against torch.nn.functional) and import time. Each part returns a
plain-data section; budgets.py turns the sections into the budget table, results.py
writes benchmarks/results.json. Nothing here is run by `make test`.
"""
