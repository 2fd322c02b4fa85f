"""The sweep's plots: one PNG per curve, drawn with matplotlib's Agg backend.

matplotlib is imported here only when a sweep runs, so the rest of the harness works
without the ``bench`` extra.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import durably

#: Log axes read growth directly: equal steps in ``x`` are equal factors.
_SIZE = (11.0, 4.2)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or a clear exit if it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "python -m benchmarks --sweep draws its plots with matplotlib, which is not "
            "installed: pip install -e '.[bench]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _xs(curve: dict[str, Any]) -> list[float]:
    return [p[curve["x"]] for p in curve["points"]]


def _ys(curve: dict[str, Any], key: str) -> list[float]:
    return [p[key] for p in curve["points"]]


def _style(ax: Any, xlabel: str, ylabel: str, logy: bool = True) -> None:
    import matplotlib.ticker as ticker

    plain = ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    ax.set_xscale("log")
    axes = [ax.xaxis]
    if logy:
        ax.set_yscale("log")
        axes.append(ax.yaxis)
    for axis in axes:  # plain numbers, at 1, 2 and 5 of each decade while they fit
        low, high = axis.get_view_interval()
        subs = (1.0,) if high / low > 50 else (1.0, 2.0, 5.0)
        axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _linear(ax: Any, xs: list[float], ys: list[float]) -> None:
    """A dashed line through the first point growing in proportion to ``x``: where the
    curve leaves it, growth is no longer linear."""
    ax.plot(xs, [ys[0] * x / xs[0] for x in xs], ":", color="grey", label="linear from 1st point")


def _label(ax: Any, xs: list[float], ys: list[float], fmt: str) -> None:
    for x, y in zip(xs, ys, strict=True):
        ax.annotate(
            fmt.format(y),
            (x, y),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )


def concurrency(plt: Any, curve: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    xs, ys = _xs(curve), _ys(curve, "steps_per_s")
    ax.plot(xs, ys, "o-", label="durably, 10 steps per execution")
    _label(ax, xs, ys, "{:,.0f}")
    ax.set_ylim(0, max(ys) * 1.15)
    _style(ax, "executions started at once", "steps/s (synced LMDB)", logy=False)
    ax.set_title("Throughput against concurrency")
    return fig


def replay(plt: Any, curve: dict[str, Any]) -> Any:
    fig, (left, right) = plt.subplots(1, 2, figsize=_SIZE)
    xs = _xs(curve)
    times = _ys(curve, "time_ms")
    left.plot(xs, times, "o-", label="replay time")
    _linear(left, xs, times)
    _label(left, xs, times, "{:,.0f} ms")
    _style(left, "events in the history", "ms")
    left.set_title("Replay time against history length")
    rates = _ys(curve, "events_per_s")
    right.plot(xs, rates, "o-", label="durably replay")
    right.plot(xs, _ys(curve, "raw_events_per_s"), "s--", label="raw LMDB read + orjson decode")
    _label(right, xs, rates, "{:,.0f}")
    right.set_ylim(0, max(_ys(curve, "raw_events_per_s") + rates) * 1.15)
    _style(right, "events in the history", "events/s", logy=False)
    right.set_title("Replay rate")
    return fig


def recovery(plt: Any, curve: dict[str, Any]) -> Any:
    fig, (left, right) = plt.subplots(1, 2, figsize=_SIZE)
    xs, bound = _xs(curve), curve["bound"]
    times = _ys(curve, "recovery_s")
    left.plot(xs, times, "o-", label="restart until ready")
    left.plot(xs, _ys(curve, "raw_scan_s"), "s--", label="raw scan + decode of the records")
    _linear(left, xs, times)
    left.axhline(bound["recovery_s"], color="red", lw=0.8, label="bound at 1,000,000: 10 s")
    _label(left, xs, times, "{:.3g} s")
    _style(left, "waiting executions", "s")
    left.set_title("Recovery time against waiting executions")
    peak = _ys(curve, "peak_rss_mb")
    anon = [r["runs"][0]["rss_anon_mb_ready"] for r in curve["points"]]
    mapped = [r["runs"][0]["rss_file_mb_ready"] for r in curve["points"]]
    right.plot(xs, peak, "o-", label="peak RSS (VmHWM)")
    right.plot(xs, anon, "^--", label="heap (RssAnon) when ready")
    right.plot(xs, mapped, "v--", label="store pages mapped (RssFile) when ready")
    right.axhline(bound["peak_rss_mb"], color="red", lw=0.8, label="bound at 1,000,000: 1.5 GB")
    _label(right, xs, peak, "{:,.0f} MB")
    _style(right, "waiting executions", "MB")
    right.set_title("Peak RSS of the recovering process")
    return fig


def timers(plt: Any, curve: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    xs = _xs(curve)
    p99 = _ys(curve, "p99_ms")
    ax.plot(xs, _ys(curve, "p50_ms"), "o-", label="p50 lateness")
    ax.plot(xs, p99, "o-", label="p99 lateness")
    ax.plot(xs, _ys(curve, "limit_ms"), "s--", label="limit: bare trio wakes + batched puts")
    _linear(ax, xs, p99)
    _label(ax, xs, p99, "{:,.0f} ms")
    # Past it the rest of the burst is parked, and each waits for a live slot to free.
    live = inspect.signature(durably.Engine).parameters["max_live_executions"].default
    ax.axvline(live, color="red", lw=0.8, label=f"max_live_executions (default {live:,})")
    _style(ax, "sleeps due at one instant", "ms")
    ax.set_ylim(top=max(p99) * 2)  # room for the top label, on the log axis
    ax.set_title("Timer lateness against burst size")
    return fig


DRAW = {"concurrency": concurrency, "replay": replay, "recovery": recovery, "timers": timers}


def draw(plt: Any, report: dict[str, Any], images: str) -> list[str]:
    """One PNG per curve of ``report`` in ``images``: their paths."""
    os.makedirs(images, exist_ok=True)
    paths = []
    for name, curve in report["curves"].items():
        fig = DRAW[name](plt, curve)
        fig.tight_layout()
        path = os.path.join(images, f"sweep-{name}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
