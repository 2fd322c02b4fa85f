"""Compensations of a ``ctx.gather``'s members: which run, and in which order.

Members finish concurrently, and trio runs the tasks one commit woke in a random order,
so before the rule their compensations were registered in whatever order trio resumed
them: ``ctx.rollback()`` undid them in that order, and a resumed run could undo them in
another (``NonDeterminismError``: "the log recorded compensate 'rollback:m1', the code
asked for 'rollback:m0'"), or fail on another member's compensation. A member cancelled
by another's failure after its completion was written also registered nothing on the
first run, but its compensation on a replay. Found by
``tests/property/test_replay_properties.py`` (thorough profile).

The rule: a gather registers its members' compensations when it ends, in argument order
(each member's own in the order its steps completed), so a rollback after it undoes them
in reverse argument order; and every member step whose completion the log holds counts.
Each case runs under several fixed orders of trio's scheduler (``scheduling``) and
``check_replay`` resumes it after a crash at every commit.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import durably
import durably.testing


@pytest.fixture(params=range(6))
def scheduling(request: pytest.FixtureRequest) -> int:
    """One fixed order of trio's scheduler (as in ``test_gather_waits.py``): the order in
    which it runs a batch of ready tasks comes from its own ``random.Random``, seeded
    here, so each parameter is the same order on every run, and together they cover the
    members resuming in different orders."""
    trio._core._run._r.seed(request.param)
    return int(request.param)


def booked(what: str) -> str:
    return f"booking-{what}"


def refused(what: str) -> str:
    raise LookupError(f"no {what} available")


def undone(booking: str) -> None:
    pass


def stuck(booking: str) -> None:
    raise OSError(f"cannot undo {booking}")


def _undone(report: durably.testing.ReplayReport) -> list[str]:
    return [
        e["step_id"].removeprefix("rollback:")
        for e in report.history
        if e["t"].startswith("compensation.")
    ]


@durably.workflow("gather-compensation-order")
async def undo_all(ctx: durably.Context, _: None) -> str:
    await ctx.step("before", booked, "before", compensate=undone)

    async def chain(n: int) -> str:  # a member of two steps, one after the other
        await ctx.step(f"m{n}-first", booked, f"m{n}-first", compensate=undone)
        return await ctx.step(f"m{n}-second", booked, f"m{n}-second", compensate=undone)

    await ctx.gather(
        ctx.step("m0", booked, "m0", compensate=undone),
        chain(1),
        ctx.step("m2", booked, "m2", compensate=undone),
        ctx.step("m3", booked, "m3", compensate=undone),
    )
    await ctx.rollback()
    return "rolled back"


def test_a_rollback_undoes_gathered_members_in_reverse_argument_order(scheduling: int) -> None:
    report = durably.testing.check_replay(undo_all, None, horizon=3600)
    assert (report.status, report.result) == ("completed", "rolled back")
    assert _undone(report) == ["m3", "m2", "m1-second", "m1-first", "m0", "before"]


@durably.workflow("gather-compensation-fails")
async def first_undo_fails(ctx: durably.Context, _: None) -> None:
    await ctx.gather(*[ctx.step(f"m{n}", booked, f"m{n}", compensate=stuck) for n in range(3)])
    await ctx.rollback()


def test_the_compensation_that_fails_is_the_last_members_in_every_run(scheduling: int) -> None:
    # The first compensation to run fails and ends the rollback: which one it is must not
    # depend on trio's order (before the rule, a resumed run named another member).
    report = durably.testing.check_replay(first_undo_fails, None, horizon=3600)
    assert report.status == "compensation_failed"
    assert report.error is not None and report.error["message"] == "cannot undo booking-m2"
    assert _undone(report) == ["m2"]


@durably.workflow("gather-compensation-after-failure")
async def undo_after_failure(ctx: durably.Context, _: None) -> str:
    await ctx.step("before", booked, "before", compensate=undone)
    try:
        await ctx.gather(
            ctx.step("m0", booked, "m0", compensate=undone),
            ctx.step("m1", refused, "m1", compensate=undone),
            ctx.step("m2", booked, "m2", compensate=undone),
        )
    except durably.StepError as exc:
        await ctx.rollback()
        return f"rolled back after {exc.step_id}"
    return "booked"


def test_members_whose_completion_is_recorded_are_undone_though_cancelled(
    scheduling: int,
) -> None:
    # m0 and m2 complete in the same commit as m1's failure. When trio resumes m1 first,
    # its failure cancels them before they return: their bookings are recorded all the
    # same, so the rollback undoes them (before the rule, only on a replay).
    report = durably.testing.check_replay(undo_after_failure, None, horizon=3600)
    assert (report.status, report.result) == ("completed", "rolled back after m1")
    assert _undone(report) == ["m2", "m0", "before"]


@durably.workflow("gather-compensation-rollback-in-member")
async def rollback_in_member(ctx: durably.Context, _: None) -> str:
    async def member() -> None:
        await ctx.step("m0", booked, "m0", compensate=undone)
        await ctx.rollback()

    try:
        await ctx.gather(member(), ctx.step("m1", booked, "m1", compensate=undone))
    except durably.ConfigurationError as exc:
        return str(exc)
    return "rolled back"


def test_a_rollback_inside_a_gathers_member_is_refused(scheduling: int) -> None:
    # What it would undo depends on which other members have finished meanwhile.
    report = durably.testing.check_replay(rollback_in_member, None, horizon=3600)
    assert report.status == "completed"
    assert "ctx.rollback cannot run inside a member of a gather" in report.result
    assert _undone(report) == []


def test_the_order_is_the_same_whatever_order_trio_resumes_the_members() -> None:
    # The same history under every fixed order: the rule leaves trio nothing to decide.
    histories: list[Any] = []
    for seed in range(6):
        trio._core._run._r.seed(seed)
        histories.append(_undone(durably.testing.check_replay(undo_all, None, boundaries=[])))
    assert all(h == histories[0] for h in histories)
