"""A server whose journal commit's outcome cannot be read back (the append raised, the database stays
unreachable) still stops. Fenced (the network partition and the PostgreSQL restart of docs/scale-out.md,
the writer lease lost), the calls waiting on that commit are answered (503), so uvicorn's graceful
shutdown, which waits for every open call, reaches the lifespan's stop. Asked to stop (SIGTERM) with the
lease still held, the graceful shutdown waits at most its bound, then cancels the call and stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from api.bootstrap import build_runtime
from api.serving import server_config
from api.settings import Settings
from engine.persistence.sql_journal import JournalUnavailable
from tests.e2e.server import add_operators, paper_settings
from tests.waiting import eventually

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "60000.00", "newClientOrderId": "pb-fenced-1"}  # fmt: skip


class Lease:
    """The runtime's view of a WriterLease: held until `lost` is set (its next check then fails)."""

    def __init__(self) -> None:
        self.state = "ACTIVE"
        self.lost = threading.Event()

    def try_acquire(self) -> bool:
        return self.state == "ACTIVE"

    def check(self) -> bool:
        if self.lost.is_set():
            self.state = "LOST"
        return self.state == "ACTIVE"

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "schema": "acct_a", "lost_reason": "partition"}

    def close(self) -> None:
        self.state = "LOST"


def test_a_fenced_writer_exits_while_a_commit_answer_cannot_be_read_back(tmp_path: Path) -> None:
    settings = paper_settings(tmp_path)
    token = add_operators(settings.data_dir)["trader"]
    lease = Lease()
    dark = threading.Event()  # the database is unreachable: set by the lost answer
    lost: list[int] = []

    def build(s: Settings) -> Any:
        runtime = build_runtime(s)
        runtime.lease = lease
        journal = runtime.journal
        append, settle = journal.append_groups, journal.settle

        def commits_then_fails(groups: Any) -> Any:
            if dark.is_set():
                raise JournalUnavailable("journal write failed: injected outage")
            if not lost and any(e.stream_id == ORDER["newClientOrderId"] for g in groups for e in g):
                append(groups)  # committed: the answer is what gets lost, then the partition
                lost.append(1)
                dark.set()
                raise JournalUnavailable("journal write failed: injected outage")
            return append(groups)

        def unreachable(timeout_s: float = 5.0) -> None:
            if dark.is_set():
                raise JournalUnavailable("journal settle failed: injected outage")
            settle(timeout_s)

        journal.append_groups, journal.settle = commits_then_fails, unreachable
        return runtime

    servers: list[uvicorn.Server] = []

    def exit_fenced() -> None:  # as api.cli.serve does
        servers[0].should_exit = True

    app = create_app(settings, build=build, announce=lambda _: None, on_fenced=exit_fenced)
    server = uvicorn.Server(server_config(app, "127.0.0.1", 0, log_level="warning"))
    servers.append(server)
    thread = threading.Thread(target=server.run, name="propbot-api", daemon=True)
    thread.start()
    answers: list[httpx.Response | BaseException] = []
    try:
        eventually(lambda: server.started, timeout=15)
        port = server.servers[0].sockets[0].getsockname()[1]
        headers = {"Authorization": f"Bearer {token}"}

        def call() -> None:
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as c:
                    answers.append(c.post("/api/live/order", json=ORDER))
            except BaseException as exc:
                answers.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        eventually(lambda: bool(lost), timeout=10)
        time.sleep(0.3)  # the writer asks the dark journal again and again
        assert answers == []  # the call waits for the journal to tell
        lease.lost.set()  # the partition: the lease check fails, the runtime fences and asks to exit
        thread.join(timeout=20)
        # Was: uvicorn waited for the call, and the call for the journal: the fenced engine never exited
        assert not thread.is_alive(), "the fenced server did not exit while the journal stayed dark"
        caller.join(timeout=5)
        (answer,) = answers
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 503, answer.text
    finally:
        dark.clear()  # let a hanging server unwind
        server.should_exit = True
        thread.join(timeout=30)


def test_a_stop_during_an_unresolved_commit_ends_within_the_graceful_bound(tmp_path: Path) -> None:
    # Was: uvicorn's graceful shutdown had no bound, so SIGTERM with a call waiting on a commit the
    # journal could not tell about (SQLite unreadable, or PostgreSQL reads failing while the lease holds)
    # kept the process up until the database came back
    settings = paper_settings(tmp_path)
    token = add_operators(settings.data_dir)["trader"]
    dark = threading.Event()
    lost: list[int] = []

    def build(s: Settings) -> Any:
        runtime = build_runtime(s)
        journal = runtime.journal
        append, settle = journal.append_groups, journal.settle

        def commits_then_fails(groups: Any) -> Any:
            if dark.is_set():
                raise JournalUnavailable("journal write failed: injected outage")
            if not lost and any(e.stream_id == ORDER["newClientOrderId"] for g in groups for e in g):
                append(groups)
                lost.append(1)
                dark.set()
                raise JournalUnavailable("journal write failed: injected outage")
            return append(groups)

        def unreachable(timeout_s: float = 5.0) -> None:
            if dark.is_set():
                raise JournalUnavailable("journal settle failed: injected outage")
            settle(timeout_s)

        journal.append_groups, journal.settle = commits_then_fails, unreachable
        return runtime

    app = create_app(settings, build=build, announce=lambda _: None)
    server = uvicorn.Server(
        server_config(app, "127.0.0.1", 0, log_level="warning", timeout_graceful_shutdown=1.0)
    )
    thread = threading.Thread(target=server.run, name="propbot-api", daemon=True)
    thread.start()
    answers: list[httpx.Response | BaseException] = []
    try:
        eventually(lambda: server.started, timeout=15)
        port = server.servers[0].sockets[0].getsockname()[1]

        def call() -> None:
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                  headers={"Authorization": f"Bearer {token}"}) as c:  # fmt: skip
                    answers.append(c.post("/api/live/order", json=ORDER))
            except BaseException as exc:
                answers.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        eventually(lambda: bool(lost), timeout=10)
        time.sleep(0.3)
        assert answers == []  # the call waits for the journal to tell
        server.should_exit = True  # what uvicorn's SIGTERM handler does
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server did not stop while the journal stayed dark"
        caller.join(timeout=5)
        (answer,) = answers
        # The cut-off call is answered as the stopping engine answers: 503 engine_stopped (was uvicorn's 500)
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 503, answer.text
        assert answer.json()["reason"] == "engine_stopped"
    finally:
        dark.clear()
        server.should_exit = True
        thread.join(timeout=30)
