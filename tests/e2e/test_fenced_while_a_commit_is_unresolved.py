"""A server whose journal commit's outcome cannot be read back (the append raised, the database stays
unreachable) still stops. Fenced (the network partition and the PostgreSQL restart of docs/scale-out.md,
the writer lease lost), the calls waiting on that commit are answered (503), so uvicorn's graceful
shutdown, which waits for every open call, reaches the lifespan's stop. Asked to stop (SIGTERM) with the
lease still held, the graceful shutdown waits at most its bound, then cancels the call and stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from api.bootstrap import build_runtime
from api.serving import server_config
from api.settings import Settings
from tests.e2e.outage import LostAnswerOutage
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


@dataclass
class Stuck:
    """A served app with one order call waiting on a commit whose outcome the dark journal cannot tell."""

    server: uvicorn.Server
    thread: threading.Thread
    caller: threading.Thread
    answers: list[httpx.Response | BaseException]

    def stopped(self, timeout_s: float) -> httpx.Response | BaseException:
        """The server thread ended within `timeout_s`; the call's one answer."""
        self.thread.join(timeout=timeout_s)
        assert not self.thread.is_alive(), "the server did not stop while the journal stayed dark"
        self.caller.join(timeout=5)
        (answer,) = self.answers
        return answer


@contextmanager
def stuck_call(tmp_path: Path, lease: Lease | None = None, **config: Any) -> Iterator[Stuck]:
    settings = paper_settings(tmp_path)
    token = add_operators(settings.data_dir)["trader"]
    outage = LostAnswerOutage(ORDER["newClientOrderId"])

    def build(s: Settings) -> Any:
        runtime = build_runtime(s)
        if lease is not None:
            runtime.lease = lease
        outage.install(runtime.journal)
        return runtime

    servers: list[uvicorn.Server] = []

    def exit_fenced() -> None:  # as api.cli.serve does
        servers[0].should_exit = True

    app = create_app(settings, build=build, announce=lambda _: None, on_fenced=exit_fenced)
    server = uvicorn.Server(server_config(app, "127.0.0.1", 0, log_level="warning", **config))
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
        eventually(lambda: bool(outage.lost), timeout=10)
        time.sleep(0.3)  # the writer asks the dark journal again and again
        assert answers == []  # the call waits for the journal to tell
        yield Stuck(server, thread, caller, answers)
    finally:
        outage.dark.clear()  # let a hanging server unwind
        server.should_exit = True
        thread.join(timeout=30)


def test_a_fenced_writer_exits_while_a_commit_answer_cannot_be_read_back(tmp_path: Path) -> None:
    lease = Lease()
    # A graceful bound far beyond the wait below: only the fence can end the server within it
    with stuck_call(tmp_path, lease, timeout_graceful_shutdown=60.0) as stuck:
        lease.lost.set()  # the partition: the lease check fails, the runtime fences and asks to exit
        # Was: uvicorn waited for the call, and the call for the journal: the fenced engine never exited
        answer = stuck.stopped(20)
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 503, answer.text


def test_a_stop_during_an_unresolved_commit_ends_within_the_graceful_bound(tmp_path: Path) -> None:
    # Was: uvicorn's graceful shutdown had no bound, so SIGTERM with a call waiting on a commit the
    # journal could not tell about (SQLite unreadable, or PostgreSQL reads failing while the lease holds)
    # kept the process up until the database came back
    with stuck_call(tmp_path, timeout_graceful_shutdown=1.0) as stuck:
        stuck.server.should_exit = True  # what uvicorn's SIGTERM handler does
        answer = stuck.stopped(15)
        # The cut-off call is answered as the stopping engine answers: 503 engine_stopped (was uvicorn's 500)
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 503, answer.text
        assert answer.json()["reason"] == "engine_stopped"
