"""durably's benchmark harness: throughput and latency against the machine's own limits.

Run it from the repository root with ``python -m benchmarks`` (``--quick`` for a smoke run,
``--only NAME`` for one scenario, ``--help`` for the rest). Every scenario measures its
physical-limit baseline (raw LMDB, bare trio) in the same run and reports the ratio,
because absolute figures on a shared machine drift while side-by-side ratios do not.
"""
