"""durably's pure core: events, codec, errors, replay, status rules and deciders.

Nothing here imports trio, lmdb, croniter or any durably module outside the core, so that
every rule of the engine can be tested alone, in microseconds (``tests/test_layout.py``
checks it from the source).
"""
