"""Execution snapshots, for golden-log tests: save an execution, restore it elsewhere."""

from __future__ import annotations

import attrs
import orjson

from durably.stores import (
    NEVER_MS,
    AddTimer,
    CreateExecution,
    ExecutionRecord,
    MailboxEntry,
    Op,
    PutExecution,
    PutSignal,
    Store,
    TakeSignal,
    Timer,
)

from ..core._errors import ConfigurationError
from ..core._events import decode


@attrs.frozen
class ExecutionSnapshot:
    """One execution as the store holds it: its record, its events, its mailbox, and its
    timers (a gather's members may have several).

    Serialised as JSON lines (:meth:`to_jsonl`): the first line is the record, then one
    line per stored event (the event bytes exactly as the engine wrote them), then one per
    buffered signal, then one per timer. Commit these as golden logs: a change to the event
    format or to the replay rules that breaks old executions then fails the test that
    resumes them.
    """

    record: ExecutionRecord
    events: list[bytes]
    mailbox: list[MailboxEntry] = attrs.field(factory=list)
    timers: list[Timer] = attrs.field(factory=list)

    def to_jsonl(self) -> str:
        lines = [orjson.dumps({"record": attrs.asdict(self.record)})]
        lines += [orjson.dumps({"event": orjson.loads(raw)}) for raw in self.events]
        lines += [orjson.dumps({"mail": attrs.asdict(entry)}) for entry in self.mailbox]
        lines += [orjson.dumps({"timer": attrs.asdict(timer)}) for timer in self.timers]
        return b"\n".join(lines).decode() + "\n"

    @classmethod
    def from_jsonl(cls, text: str) -> ExecutionSnapshot:
        record: ExecutionRecord | None = None
        events: list[bytes] = []
        mailbox: list[MailboxEntry] = []
        timers: list[Timer] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            item = orjson.loads(line)
            if "record" in item:
                data = item["record"]
                if data.get("timer") is not None:
                    data["timer"] = tuple(data["timer"])
                record = ExecutionRecord(**data)
            elif "event" in item:
                events.append(orjson.dumps(item["event"]))
            elif "mail" in item:
                mailbox.append(MailboxEntry(**item["mail"]))
            elif "timer" in item:
                timers.append(Timer(**item["timer"]))
            else:
                raise ConfigurationError(f"snapshot line {number}: unknown item {line[:80]!r}")
        if record is None:
            raise ConfigurationError("a snapshot needs a record line")
        return cls(record, events, mailbox, timers)


def snapshot_execution(store: Store, execution_id: str) -> ExecutionSnapshot:
    """The execution ``execution_id`` of ``store``, to save or to restore elsewhere."""
    record = store.get_execution(execution_id)
    if record is None:
        raise ConfigurationError(f"no execution {execution_id!r} in this store")
    timers = [t for t in store.due_timers(NEVER_MS) if t.owner == execution_id]
    return ExecutionSnapshot(
        record, store.read_events(execution_id), store.mailbox(execution_id), timers
    )


def restore_execution(store: Store, snapshot: ExecutionSnapshot) -> str:
    """Write ``snapshot`` into ``store`` through ordinary store ops; return its id.

    Mailbox sequence numbers are reproduced (consumed ones are taken again at once), so
    signals consumed after the restore get the numbers they would have had.
    """
    record = snapshot.record
    eid = record.id
    for raw in snapshot.events:
        decode(raw, eid)  # refuse a damaged snapshot before writing anything
    consumed = [
        orjson.loads(raw).get("mailbox_seq", -1)
        for raw in snapshot.events
        if orjson.loads(raw).get("t") in ("signal.received", "child.ended")
    ]
    pending = {entry.seq: entry for entry in snapshot.mailbox}
    top = max([*consumed, *pending, -1]) + 1
    opening = attrs.evolve(record, status="running", timer=None, waiting_signal=None)
    ops: list[Op] = [CreateExecution(opening, list(snapshot.events))]
    for seq in range(top):
        entry = pending.get(seq)
        if entry is not None:
            ops.append(
                PutSignal(
                    eid,
                    entry.signal,
                    entry.payload,
                    entry.dedup_key,
                    entry.at,
                    entry.by,
                    entry.reason,
                )
            )
        else:
            ops += [PutSignal(eid, "durably.restored", None), TakeSignal(eid, seq)]
    ops.append(PutExecution(record))
    timers = set(snapshot.timers)
    if record.timer is not None:
        timers.add(Timer(record.timer[0], eid, record.timer[1]))
    ops.extend(AddTimer(timer) for timer in sorted(timers))
    store.apply(ops)
    return eid
