"""Recovery, run in a process of its own so that its peak RSS is the recovery's alone.

``python -m benchmarks._recover PATH MAP_SIZE`` restarts an engine over the store of
waiting executions that ``benchmarks._parked`` left at ``PATH`` (the ``recovery``
scenario's measure: store open to engine ready) and prints one JSON line: the time, what
recovery found, the RSS before the store was opened and once ready, and the process's
peak RSS.

The peak is ``VmHWM``, the high-water mark of this process's own memory. On Linux
``ru_maxrss`` carries the spawning process's RSS across ``exec`` (a harness holding
300 MB starts a child whose ``ru_maxrss`` is 300 MB before it does anything), so it is
reported beside it but is the peak only when the parent was smaller.
"""

from __future__ import annotations

import json
import resource
import sys

import trio

from ._parked import _status_kb
from ._scenarios import restart


def main(path: str, map_size: int) -> dict[str, float]:
    before_kb = _status_kb("VmRSS")
    at_ready: dict[str, float] = {}

    def ready() -> None:
        # Heap and the store's mapped pages, apart: ru_maxrss counts both, and both are
        # memory the recovering process holds.
        at_ready["rss_anon_mb_ready"] = _status_kb("RssAnon") / 1024
        at_ready["rss_file_mb_ready"] = _status_kb("RssFile") / 1024

    elapsed, again = trio.run(restart, path, map_size, ready)
    return {
        "recovery_s": elapsed,
        "parked": again.parked,
        "before_open_rss_mb": before_kb / 1024,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **at_ready,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
