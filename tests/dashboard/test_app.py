"""The dashboard's pages and forms over HTTP (httpx against the ASGI app, lifespan and
all, on a real LMDB store), without a browser: what each page shows, the filters and
paging, the actions and what they write, and the access rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from durably.dashboard import create_app

from .conftest import BASE, csrf_of, listed_ids, read_back, serve

Seeded = tuple[Path, dict[str, str]]


def _get(app: Any, *paths: str) -> list[httpx.Response]:
    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [await http.get(path) for path in paths]

    return serve(app, scenario)


def test_list_shows_every_execution_oldest_first(seeded: Seeded) -> None:
    path, ids = seeded
    (page,) = _get(create_app(path), "/")
    assert page.status_code == 200
    shown = listed_ids(page.text)
    # The child (kid) is listed too; the corrupt record shows as an unreadable one.
    assert shown == sorted(shown)
    assert {ids[k] for k in ("fine", "failed", "waiter", "trip", "hangs", "victim")} <= set(shown)
    row = page.text[page.text.index(f'data-id="{ids["failed"]}"') :]
    assert "order-17" in row[:2000] and "payment provider unreachable" in row[:2000]
    # Times in ISO 8601 with a zone, never epoch milliseconds.
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", page.text)
    assert not re.search(r"\b1[78]\d{11}\b", page.text)


def test_filters_by_status_workflow_queue_and_time(seeded: Seeded) -> None:
    path, ids = seeded
    pages = _get(
        create_app(path, utc=True),
        "/?status=failed",
        "/?workflow=charge",
        "/?queue=emails",
        "/?status=waiting&workflow=waiter",
        "/?to=2001-01-01T00:00",
        "/?from=2001-01-01T00:00Z&status=completed",
    )
    failed, charge, emails, waiting, before, since = (listed_ids(p.text) for p in pages)
    assert failed == sorted([ids["failed"], ids["hangs"]])
    assert charge == [ids["failed"]]
    assert emails == [ids["queued"]]
    assert waiting == sorted([ids["waiter"]])  # the corrupt one is in no status
    assert before == []
    assert {ids["fine"], ids["trip"]} <= set(since) and ids["failed"] not in since
    assert 'value="2001-01-01T00:00Z"' in pages[5].text  # the form keeps the filter


def test_search_by_id_prefix_and_idempotency_key(seeded: Seeded) -> None:
    path, ids = seeded

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await http.get("/", params={"q": ids["waiter"]}),
            await http.get("/", params={"q": "order-17"}),
            await http.get("/", params={"q": "order-17", "workflow": "charge"}),
            await http.get("/", params={"q": ids["waiter"][:26]}),
            await http.get("/", params={"q": "no-such-key"}),
        ]

    exact, keyed, keyed_with_workflow, prefix, nothing = serve(create_app(path), scenario)
    assert exact.status_code == 303
    assert exact.headers["location"] == f"/executions/{ids['waiter']}"
    assert listed_ids(keyed.text) == [ids["failed"]]
    assert keyed_with_workflow.headers["location"] == f"/executions/{ids['failed']}"
    assert ids["waiter"] in listed_ids(prefix.text)
    assert all(i.startswith(ids["waiter"][:26]) for i in listed_ids(prefix.text))
    assert listed_ids(nothing.text) == []


def test_paging_by_id_visits_each_execution_once(seeded: Seeded) -> None:
    path, _ = seeded

    async def scenario(http: httpx.AsyncClient) -> tuple[list[str], list[str], int]:
        everything = listed_ids((await http.get("/?limit=1000")).text)
        seen: list[str] = []
        url, pages = "/?limit=2", 0
        while url:
            page = await http.get(url)
            pages += 1
            rows = listed_ids(page.text)
            assert len(rows) <= 2
            seen += rows
            found = re.search(r'href="([^"]+)" id="next-page"', page.text)
            url = found.group(1).replace("&amp;", "&") if found else ""
        return everything, seen, pages

    everything, seen, pages = serve(create_app(path), scenario)
    assert seen == everything and len(everything) >= 8
    assert pages == -(-len(everything) // 2)  # no empty page at the end: the last says so


def test_execution_page_shows_timeline_children_published_and_result(seeded: Seeded) -> None:
    path, ids = seeded
    fine, trip, failed = _get(
        create_app(path),
        f"/executions/{ids['fine']}",
        f"/executions/{ids['trip']}",
        f"/executions/{ids['failed']}",
    )
    for step, kind in (("first", "step"), ("nap", "sleep"), ("kid", "child")):
        assert f'data-step="{step}" data-kind="{kind}" data-status="completed"' in fine.text
    assert f'href="/executions/{listed_child(fine.text)}"' in fine.text  # the child links
    assert "progress" in fine.text and "&#34;done&#34;: 1" in fine.text  # published value
    assert 'id="result"' in fine.text and "&#34;doubled&#34;: 4" in fine.text
    timeline = fine.text[fine.text.index('id="timeline"') :]
    kinds = re.findall(r'<tr data-kind="([a-z_]+)"', timeline)
    assert kinds[0] == "status_changed" and "sleep_scheduled" in kinds
    assert "child_started" in kinds and "published" in kinds
    # A sleep's wake time in ISO 8601 with its zone.
    assert re.search(r"wake_at=\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d", timeline)
    assert 'id="compensations-table"' in trip.text and "compensation_completed" in trip.text
    # The failure: its error, its traceback, and the forms that fit a failed execution.
    assert "ConnectionError: payment provider unreachable" in failed.text
    assert "Traceback (most recent call last)" in failed.text
    assert 'id="retry-form"' in failed.text and 'id="skip_step-form"' in failed.text
    assert 'id="cancel-form"' not in failed.text  # it is finished


def listed_child(html: str) -> str:
    found = re.search(r'id="children-table".*?href="/executions/([0-9a-f]+)"', html, re.S)
    assert found is not None
    return found.group(1)


def test_unknown_execution_is_404(seeded: Seeded) -> None:
    path, _ = seeded
    page, live = _get(create_app(path), "/executions/nope", "/executions/nope/live?n=3&s=x")
    assert page.status_code == 404 and "no execution nope in this store" in page.text
    assert live.status_code == 404


def test_bad_filters_are_a_clear_400(seeded: Seeded) -> None:
    path, _ = seeded
    status, moment, limit, stuck = _get(
        create_app(path), "/?status=lost", "/?from=yesterday", "/?limit=0", "/attention?stuck=x"
    )
    assert status.status_code == 400 and "unknown status &#39;lost&#39;" in status.text
    assert moment.status_code == 400 and "ISO 8601" in moment.text
    assert limit.status_code == 400 and "between 1 and 1000" in limit.text
    assert stuck.status_code == 400 and "e.g. 90s, 15m, 2h" in stuck.text


def test_needs_attention_sorts_failed_dead_quarantined_and_stuck(seeded: Seeded) -> None:
    path, ids = seeded
    default, short, long = _get(
        create_app(path), "/attention", "/attention?stuck=30m", "/attention?stuck=1d"
    )
    page = default.text
    assert listed_ids(page, "failed-table") == [ids["failed"]]
    assert listed_ids(page, "dead-table") == [ids["hangs"]]
    assert listed_ids(page, "quarantined-table") == [ids["victim"]]
    # Seeded 12 hours ago: the waiter has waited for its signal past the 1 h default;
    # the queued one has a delay ahead of it, so it is not stuck.
    assert listed_ids(page, "stuck-table") == [ids["waiter"]]
    assert "waiting for signal &#39;approve&#39;" in page
    assert listed_ids(short.text, "stuck-table") == [ids["waiter"]]
    assert listed_ids(long.text, "stuck-table") == []


def test_schedules_and_queues_pages(seeded: Seeded) -> None:
    path, _ = seeded
    schedules, queues = _get(create_app(path, utc=True), "/schedules", "/queues")
    row = schedules.text[schedules.text.index('data-id="nightly"') :][:3000]
    assert "every 1 d 00 h" in row and "active" in row and ">Pause</button>" in row
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row)  # next fire, UTC
    line = queues.text[queues.text.index('data-name="emails"') :][:2000]
    assert "concurrency 2, rate 10 per 1 s" in line
    cells = re.findall(r"<td>([^<]*)</td>", line)
    assert cells[:3] == ["1", "1", "0"]  # queued 1, of them delayed 1, running 0


def test_pause_and_resume_a_schedule(fresh: Seeded) -> None:
    path, _ = fresh

    async def scenario(http: httpx.AsyncClient) -> list[str]:
        csrf = csrf_of((await http.get("/schedules")).text)
        out = []
        for action in ("pause", "resume"):
            done = await http.post(f"/schedules/nightly/{action}", data={"csrf": csrf})
            assert done.status_code == 303, done.text
            out.append((await http.get(done.headers["location"])).text)
        missing = await http.post("/schedules/nope/pause", data={"csrf": csrf})
        assert missing.status_code == 404
        return out

    paused, resumed = serve(create_app(path), scenario)
    assert "Paused." in paused and 'badge s-paused">paused' in paused and ">Resume<" in paused
    assert "Resumed." in resumed and 'badge s-active">active' in resumed


def test_retry_records_who_and_why(fresh: Seeded) -> None:
    path, ids = fresh
    failed = ids["failed"]

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        page = await http.get(f"/executions/{failed}")
        form = {"csrf": csrf_of(page.text), "reason": "provider is back"}
        done = await http.post(f"/executions/{failed}/retry", data=form, headers={"origin": BASE})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/executions/{failed}?done=retry"
        return await http.get(done.headers["location"])

    after = serve(create_app(path, operator="alice"), scenario)
    assert "Retried" in after.text
    execution, trail = read_back(path, failed)
    # No worker runs: the client wrote it, holding the worker lock; it runs at the next start.
    assert (execution.status.value, execution.attempt) == ("running", 2)
    acted = [e for e in trail if e.kind == "operator_action"]
    assert [(e.data["action"], e.data["by"], e.data["reason"]) for e in acted] == [
        ("retry", "alice", "provider is back")
    ]


def test_csrf_token_and_origin_are_required_on_every_post(fresh: Seeded) -> None:
    path, ids = fresh
    failed = ids["failed"]

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        csrf = csrf_of((await http.get(f"/executions/{failed}")).text)
        url = f"/executions/{failed}/retry"
        return [
            await http.post(url, data={"reason": "r"}),
            await http.post(url, data={"reason": "r", "csrf": "0" * 64}),
            await http.post(
                url, data={"reason": "r", "csrf": csrf}, headers={"origin": "http://evil.example"}
            ),
            await http.post(
                url,
                data={"reason": "r", "csrf": csrf},
                headers={"referer": "http://evil.example/x"},
            ),
            await http.post(url, data={"reason": "r", "csrf": csrf}, headers={"origin": "null"}),
        ]

    missing, wrong, origin, referer, null = serve(create_app(path), scenario)
    for response in (missing, wrong):
        assert response.status_code == 403 and "CSRF token does not match" in response.text
    for response in (origin, referer, null):
        assert response.status_code == 403 and "cross-site request" in response.text
    execution, trail = read_back(path, failed)
    assert execution.attempt == 1 and not [e for e in trail if e.kind == "operator_action"]


def test_a_reason_is_required(fresh: Seeded) -> None:
    path, ids = fresh

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        csrf = csrf_of((await http.get(f"/executions/{ids['failed']}")).text)
        return await http.post(
            f"/executions/{ids['failed']}/retry", data={"csrf": csrf, "reason": "  "}
        )

    refused = serve(create_app(path), scenario)
    assert refused.status_code == 400 and "give a reason" in refused.text


def test_signal_payload_must_be_json(fresh: Seeded) -> None:
    path, ids = fresh
    waiter = ids["waiter"]

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        csrf = csrf_of((await http.get(f"/executions/{waiter}")).text)
        url = f"/executions/{waiter}/signal"
        base = {"csrf": csrf, "name": "approve", "reason": "checked by hand"}
        return [
            await http.post(url, data={**base, "payload": "{not json"}),
            await http.post(url, data={**base, "payload": "NaN"}),
            await http.post(url, data={**base, "payload": '{"ok": true}'}),
            await http.post(url, data={**base, "name": "durably.cancel", "payload": "1"}),
            await http.get(f"/executions/{waiter}"),
        ]

    broken, nan, sent, reserved, page = serve(create_app(path, operator="erin"), scenario)
    assert broken.status_code == 400 and "the payload is not valid JSON" in broken.text
    assert nan.status_code == 400 and "NaN is not JSON" in nan.text
    assert sent.status_code == 303
    assert sent.headers["location"].endswith("?done=signal&delivery=delivered")
    assert reserved.status_code == 400 and "reserved" in reserved.text
    _, trail = read_back(path, waiter)
    # No worker ran it: the execution has not taken the signal; the mailbox keeps it.
    assert "signal_delivered" not in [e.kind for e in trail]
    from durably.stores import LmdbStore

    store = LmdbStore(path, readonly=True)
    try:
        mail = [(m.signal, m.payload, m.by, m.reason) for m in store.mailbox(waiter)]
    finally:
        store.close()
    # Who sent it and why travel with it; the page lists it until a wait takes it.
    assert mail == [("approve", {"ok": True}, "erin", "checked by hand")]
    assert 'id="mailbox-table"' in page.text and "checked by hand" in page.text


def test_skip_step_force_fail_and_refused_actions(fresh: Seeded) -> None:
    path, ids = fresh

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        csrf = csrf_of((await http.get(f"/executions/{ids['failed']}")).text)
        act = "/executions/{}/{}".format
        return [
            await http.post(
                act(ids["failed"], "skip_step"),
                data={
                    "csrf": csrf,
                    "step_id": "charge",
                    "result": '"paid at the desk"',
                    "reason": "cash",
                },
            ),
            await http.post(
                act(ids["waiter"], "force_fail"), data={"csrf": csrf, "reason": "customer left"}
            ),
            await http.post(act(ids["fine"], "cancel"), data={"csrf": csrf, "reason": "late"}),
            await http.post(act(ids["fine"], "explode"), data={"csrf": csrf, "reason": "x"}),
        ]

    skipped, forced, refused, unknown = serve(create_app(path, operator="bob"), scenario)
    assert skipped.status_code == 303 and forced.status_code == 303
    assert refused.status_code == 409
    assert "only an unfinished execution can be cancelled" in refused.text
    assert unknown.status_code == 404
    execution, trail = read_back(path, ids["failed"])
    assert execution.attempt == 2
    skip = next(e for e in trail if e.kind == "step_skipped")
    assert (skip.step_id, skip.data["by"], skip.data["reason"]) == ("charge", "bob", "cash")
    execution, trail = read_back(path, ids["waiter"])
    assert execution.status.value == "failed" and execution.error is not None
    assert execution.error["message"] == "customer left"
    assert next(e for e in trail if e.kind == "operator_action").data["by"] == "bob"


def test_live_fragment_answers_204_until_something_changes(seeded: Seeded) -> None:
    path, ids = seeded
    waiter = ids["waiter"]
    (page,) = _get(create_app(path), f"/executions/{waiter}")
    events = re.search(r'data-events="(\d+)"', page.text)
    assert events is not None and 'data-active="1"' in page.text
    known = int(events.group(1))
    same, other, moved = _get(
        create_app(path),
        f"/executions/{waiter}/live?n={known}&s=waiting",
        f"/executions/{waiter}/live?n={known}&s=running",
        f"/executions/{waiter}/live?n={known - 1}&s=waiting",
    )
    assert same.status_code == 204
    for response in (other, moved):
        assert response.status_code == 200 and 'id="timeline"' in response.text
        assert response.headers["x-durably-events"] == str(known)
        assert response.headers["x-durably-status"] == "waiting"
    assert "<html" not in moved.text  # a fragment, not a page


def test_pages_carry_a_nonce_policy_and_refuse_framing(seeded: Seeded) -> None:
    path, ids = seeded
    (page,) = _get(create_app(path), f"/executions/{ids['waiter']}")
    policy = page.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy)
    assert nonce is not None and f'<script nonce="{nonce.group(1)}">' in page.text
    assert "frame-ancestors 'none'" in policy and page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


def test_token_login_is_required_and_names_the_operator(fresh: Seeded) -> None:
    path, ids = fresh
    token = "s3cret-token-for-tests"

    async def scenario(http: httpx.AsyncClient) -> dict[str, httpx.Response]:
        out = {"anonymous": await http.get(f"/executions/{ids['failed']}")}
        out["post"] = await http.post(f"/executions/{ids['failed']}/retry", data={"reason": "r"})
        out["wrong"] = await http.post("/login", data={"token": "guess-guess-guess", "name": "eve"})
        form = {"token": token, "name": "carol", "next": f"/executions/{ids['failed']}"}
        out["login"] = await http.post("/login", data=form)
        out["page"] = await http.get(f"/executions/{ids['failed']}")
        data = {"csrf": csrf_of(out["page"].text), "reason": "after login"}
        out["retry"] = await http.post(f"/executions/{ids['failed']}/retry", data=data)
        return out

    got = serve(create_app(path, token=token), scenario)
    assert got["anonymous"].status_code == 303
    assert got["anonymous"].headers["location"] == f"/login?next=/executions/{ids['failed']}"
    assert got["post"].status_code == 403 and "log in first" in got["post"].text
    assert got["wrong"].status_code == 401 and "not this dashboard" in got["wrong"].text
    assert "set-cookie" not in got["wrong"].headers
    assert got["login"].status_code == 303
    assert got["login"].headers["location"] == f"/executions/{ids['failed']}"
    cookie = got["login"].headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert 'id="operator">carol</b>' in got["page"].text
    assert got["retry"].status_code == 303
    _, trail = read_back(path, ids["failed"])
    assert next(e for e in trail if e.kind == "operator_action").data["by"] == "carol"


def test_a_forged_or_foreign_session_cookie_is_refused(seeded: Seeded) -> None:
    path, _ = seeded
    token = "s3cret-token-for-tests"

    async def login(http: httpx.AsyncClient) -> str:
        done = await http.post("/login", data={"token": token, "name": "dan"})
        assert done.status_code == 303
        return str(done.cookies["durably_session"])

    cookie = serve(create_app(path, token=token), login)

    name, _, rest = cookie.partition(".")[2].partition(".")
    tampered = "v1." + name[::-1] + "." + rest  # another name, the same signature

    async def front(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get("/")

    same = serve(create_app(path, token=token), front, cookies={"durably_session": cookie})
    assert same.status_code == 200 and 'id="operator">dan</b>' in same.text
    forged = serve(create_app(path, token=token), front, cookies={"durably_session": tampered})
    assert forged.status_code == 303  # back to the login
    # A dashboard with another token does not take this one's sessions.
    other = create_app(path, token="another-token-entirely")
    assert serve(other, front, cookies={"durably_session": cookie}).status_code == 303


def test_host_header_is_checked_when_asked(seeded: Seeded) -> None:
    path, _ = seeded

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await http.get("/", headers={"host": "127.0.0.1:8000"}),
            await http.get("/", headers={"host": "rebound.example:8000"}),
        ]

    good, bad = serve(create_app(path, allowed_hosts=["127.0.0.1", "localhost"]), scenario)
    assert good.status_code == 200
    assert bad.status_code == 400 and "rebound.example" in bad.text


def test_settings_are_checked() -> None:
    from durably import ConfigurationError

    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        create_app("/nowhere", token="short")
    with pytest.raises(ConfigurationError, match="operator name"):
        create_app("/nowhere", operator=" ")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--host", "0.0.0.0"], 2, "refusing to serve the dashboard on 0.0.0.0 without a token"),
        (["--token", "short"], 2, "at least 16 characters"),
        (["--stuck-after", "soon"], 2, "a duration is a positive number"),
    ],
)
def test_the_command_refuses_unsafe_or_bad_options(
    seeded: Seeded, args: list[str], code: int, message: str
) -> None:
    path, _ = seeded
    done = subprocess.run(
        [sys.executable, "-m", "durably", "dashboard", "--store", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "DURABLY_DASHBOARD_TOKEN"},
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr


def test_the_command_needs_a_store(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "durably", "dashboard", "--store", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "no durably store at" in done.stderr


def test_the_command_serves_on_loopback_and_answers_only_loopback_names(seeded: Seeded) -> None:
    """The real console script: a free port, the banner, a page, a rebinding Host refused,
    and a clean stop on SIGTERM."""
    path, ids = seeded
    script = Path(sys.executable).with_name("durably")
    server = subprocess.Popen(
        [str(script), "dashboard", "--store", str(path), "--port", "0", "--operator", "zed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DURABLY_DASHBOARD_TOKEN"},
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("durably dashboard: http://127.0.0.1:"), banner
        url = banner.split()[2]
        page = httpx.get(f"{url}executions/{ids['failed']}", timeout=10)
        assert page.status_code == 200 and 'id="operator">zed</b>' in page.text
        port = url.rsplit(":", 1)[1].strip("/")
        rebound = httpx.get(url, headers={"host": f"attacker.example:{port}"}, timeout=10)
        assert rebound.status_code == 400 and "answers to localhost" in rebound.text
    finally:
        server.terminate()
        server.wait(10)
    assert server.stderr is not None
    assert "Traceback" not in server.stderr.read()


def test_a_quarantined_execution_has_a_page(seeded: Seeded) -> None:
    path, ids = seeded
    page, live = _get(
        create_app(path),
        f"/executions/{ids['victim']}",
        f"/executions/{ids['victim']}/live?n=0&s=failed",
    )
    assert page.status_code == 200
    assert (
        "durably.CorruptRecordError" in page.text and "restore the store from a backup" in page.text
    )
    assert 'id="actions"' not in page.text  # nothing to act on: its record is unreadable
    assert live.status_code == 200 and live.headers["x-durably-status"] == "failed"


def test_the_workers_page_lists_workers_of_many(fresh: Seeded) -> None:
    import time

    from durably.stores import Heartbeat, LmdbStore

    path, _ = fresh
    (empty,) = _get(create_app(path, utc=True), "/workers")
    assert "no workers of many" in empty.text
    store = LmdbStore(path, lock=False)
    try:
        now = int(time.time() * 1000)
        store.apply([Heartbeat("host-a-1", now, 60_000)])
        store.apply([Heartbeat("host-a-1", now, 60_000, release=frozenset(range(40, 64)))])
        store.apply([Heartbeat("host-b-2", now - 120_000, 60_000)])  # its leases ran out
    finally:
        store.close()
    (page,) = _get(create_app(path, utc=True), "/workers")
    a = page.text[page.text.index('data-worker="host-a-1"') :][:600]
    b = page.text[page.text.index('data-worker="host-b-2"') :][:600]
    assert "<td>40</td>" in a and "live" in a
    assert "<td>24</td>" in b and "expired" in b
    assert "Workers</a>" in page.text  # in the navigation
