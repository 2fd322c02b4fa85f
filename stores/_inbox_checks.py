"""The conformance checks of the inbox, the calls and their answers (see ``_checks.py``).

What the worker relies on: an entry lands in the transaction of the write it announces
(or not at all), is taken exactly once, with its call's request; a withdrawn request is
never taken; an answer is taken once; a damaged record is returned as its error and
removed, so that it can never block the inbox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from durably.stores import (
    ExpireReplies,
    InboxEntry,
    Notify,
    PutCall,
    PutMeta,
    PutReply,
    Store,
    TakeInbox,
    TakeReply,
    WithdrawCall,
)

from ..core._errors import CorruptRecordError
from ..core._records import INBOX_CALL, INBOX_SIGNAL, INBOX_START


class Check(Protocol):
    def equal(self, actual: object, expected: object, what: str) -> None: ...

    def true(self, condition: bool, what: str) -> None: ...

    def raises(self, store: Store, ops: Any, what: str) -> None: ...


def _check_inbox(c: Check, store: Store) -> None:
    c.equal(store.inbox_waiting(), False, "a fresh store's inbox is empty")
    c.equal(store.apply([TakeInbox(10)]), [[]], "TakeInbox of an empty inbox")
    store.apply([Notify("e2", INBOX_SIGNAL), Notify("e1", INBOX_START)])
    store.apply([Notify("e1", INBOX_START)])  # again before a drain: one entry
    c.equal(store.inbox_waiting(), True, "inbox_waiting after a Notify")
    [first] = store.apply([TakeInbox(1)])
    c.equal(first, [InboxEntry("e1", INBOX_START)], "TakeInbox(1): the first key only")
    [rest] = store.apply([TakeInbox(10)])
    c.equal(rest, [InboxEntry("e2", INBOX_SIGNAL)], "TakeInbox takes each entry once")
    c.equal(store.inbox_waiting(), False, "inbox_waiting once all is taken")


def _check_inbox_is_atomic(c: Check, store: Store) -> None:
    # The entry shares its write's fate: a batch that fails keeps neither.
    c.raises(
        store,
        [Notify("e1", INBOX_START), PutMeta("x" * 600, 1)],
        "a batch with an over-long key must raise",
    )
    c.equal(store.inbox_waiting(), False, "a failed batch leaves no inbox entry")


def _check_calls(c: Check, store: Store) -> None:
    store.apply([PutCall("t1", b'{"method": "m"}'), PutCall("t2", b"{}")])
    [withdrawn, again] = store.apply([WithdrawCall("t2"), WithdrawCall("t2")])
    c.equal((withdrawn, again), (True, False), "WithdrawCall says whether it was waiting")
    [taken] = store.apply([TakeInbox(10)])
    c.equal(taken, [InboxEntry("t1", INBOX_CALL, b'{"method": "m"}')], "a call, with its request")
    c.equal(store.apply([WithdrawCall("t1")]), [False], "a taken call cannot be withdrawn")
    c.equal(store.apply([TakeInbox(10)]), [[]], "a call is taken once")


def _check_replies(c: Check, store: Store) -> None:
    c.equal(store.apply([TakeReply("t1")]), [None], "TakeReply before the answer")
    store.apply([PutReply("t1", 100, b'{"value": "v"}'), PutReply("old", 5, b"{}")])
    [expired] = store.apply([ExpireReplies(50)])
    c.equal(expired, 1, "ExpireReplies removes answers written before the bound")
    c.equal(store.apply([TakeReply("old")]), [None], "an expired answer is gone")
    [answer, twice] = store.apply([TakeReply("t1"), TakeReply("t1")])
    c.equal((answer, twice), (b'{"value": "v"}', None), "an answer is taken once")


def _check_empty_call_token(c: Check, store: Store) -> None:
    # An entry no call can have (an empty key) must not make every drain fail.
    store.apply([Notify("", INBOX_CALL), Notify("", INBOX_START)])
    [taken] = store.apply([TakeInbox(10)])
    c.equal(
        sorted((e.key, e.kind, e.request) for e in taken),
        [("", INBOX_CALL, None), ("", INBOX_START, None)],
        "entries with an empty key are taken like any other",
    )
    c.true(not any(isinstance(e.request, CorruptRecordError) for e in taken), "no request read")


INBOX_CHECKS: list[tuple[str, Callable[[Any, Store], None]]] = [
    ("inbox: Notify, TakeInbox, inbox_waiting", _check_inbox),
    ("inbox: an entry shares its batch's fate", _check_inbox_is_atomic),
    ("calls: PutCall, WithdrawCall, taken with the inbox", _check_calls),
    ("answers: PutReply, TakeReply, ExpireReplies", _check_replies),
    ("inbox: an empty key never blocks a drain", _check_empty_call_token),
]
