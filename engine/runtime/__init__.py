"""durably's runtime: the trio actors (commit, scheduler, executions, schedules, operator).

Parts talk through the narrow ports in ``_ports.py``, never through the engine itself.
"""
