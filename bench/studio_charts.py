"""The chart case of bench/studio.py: a job with 20 metrics x 5,000 steps, finished and live, in
Chromium (Debian's, via Playwright): time until every chart is drawn and bytes transferred, against
MLflow's own UI on the same run (its run page's model metrics), in interleaved rounds.

The studio keeps a job's sampled answer while its histories are unchanged: from the second round on
the finished job's charts come from that cache, the live job's never (it logs every 100 ms). The
first round (cold caches, both the server's and the browser's) is printed as "first open".

Bytes are what crossed the wire (Chromium's encodedDataLength, compressed bodies and headers)
for every request of the page: its scripts and styles come from the browser cache after the first
round, as for a user who opens a second job.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from common import median

CHROMIUM = "/usr/bin/chromium"
METRICS = 20
STEPS = 5000
LIVE_STEPS = 4000  # a live job has logged this many steps when its page opens
LIVE_WATCH_S = 16.0  # how long the live page is watched (the studio asks every 5 s)
GOALS = {"draw_s": 1.0, "bytes": 1_000_000}
SETTLE_S = 2.0


def keys() -> list[str]:
    return [f"{'train' if i < METRICS // 2 else 'val'}/metric_{i:02d}" for i in range(METRICS)]


def make_live(engine: sa.Engine, live: str) -> None:
    """Set the live job and its run running, its heartbeat now. Again before the chart case: the
    table cases that run first take long enough for the workspace to settle a job whose runner
    never beats as lost."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE flowyard_jobs SET status='running', ended_at=NULL, error=NULL, "
                "heartbeat_at=:t WHERE id=:i"
            ),
            {"i": live, "t": datetime.now(UTC)},
        )
        conn.execute(
            sa.text("UPDATE runs SET status='RUNNING', end_time=NULL WHERE run_uuid=:i"),
            {"i": live},
        )


def fill_charts(url: str, finished: str, live: str) -> None:
    """20 metrics x 5,000 steps for the finished job's run, 20 x 4,000 for the live one's (whose
    job and run are set running)."""
    rng = random.Random(3)
    engine = sa.create_engine(url)
    start_ms = int(time.time() * 1000) - STEPS * 1000
    make_live(engine, live)
    with engine.begin() as conn:
        for run_id, steps in ((finished, STEPS), (live, LIVE_STEPS)):
            for table in ("metrics", "latest_metrics"):
                conn.execute(sa.text(f"DELETE FROM {table} WHERE run_uuid=:i"), {"i": run_id})
            rows = [
                {
                    "key": key,
                    "value": 1.0 / (s + 1) + rng.random() * 0.01,
                    "timestamp": start_ms + s * 1000,
                    "step": s,
                    "is_nan": False,
                    "run_uuid": run_id,
                }
                for key in keys()
                for s in range(steps)
            ]
            insert = "INSERT INTO {} (key, value, timestamp, step, is_nan, run_uuid) VALUES "
            marks = "(:key, :value, :timestamp, :step, :is_nan, :run_uuid)"
            conn.execute(sa.text(insert.format("metrics") + marks), rows)
            latest = {r["key"]: r for r in rows}
            conn.execute(sa.text(insert.format("latest_metrics") + marks), list(latest.values()))
    engine.dispose()


class Logger:
    """Logs one value per metric every 100 ms to the live run, as a training loop would."""

    def __init__(self, url: str, run_id: str) -> None:
        self.engine = sa.create_engine(url)
        self.run_id = run_id
        self.step = LIVE_STEPS
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Logger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.engine.dispose()

    def _loop(self) -> None:
        while not self.stop.wait(0.1):
            now = int(time.time() * 1000)
            rows = [
                {"key": k, "value": 0.001, "timestamp": now, "step": self.step, "run": self.run_id}
                for k in keys()
            ]
            with self.engine.begin() as conn:
                # The workspace settles a job whose runner stays silent as lost: beat for it.
                conn.execute(
                    sa.text("UPDATE flowyard_jobs SET heartbeat_at=:t WHERE id=:i"),
                    {"t": datetime.now(UTC), "i": self.run_id},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
                        "VALUES (:key, :value, :timestamp, :step, false, :run)"
                    ),
                    rows,
                )
            self.step += 1


class Wire:
    """Bytes received by a page (Chromium's own count, through the DevTools protocol)."""

    def __init__(self, page: Any) -> None:
        self.bytes = 0
        self.requests: list[str] = []
        self.sizes: list[tuple[str, int]] = []
        self.finished_at: list[tuple[str, float]] = []
        self._urls: dict[str, str] = {}
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.loadingFinished", self._done)

    def _sent(self, event: dict[str, Any]) -> None:
        self._urls[event["requestId"]] = event["request"]["url"]

    def _done(self, event: dict[str, Any]) -> None:
        size = int(event.get("encodedDataLength", 0))
        url = self._urls.get(event["requestId"], "?")
        self.bytes += size
        self.requests.append(url)
        self.sizes.append((url, size))
        self.finished_at.append((url, time.perf_counter()))

    def bytes_for(self, part: str) -> int:
        return sum(size for url, size in self.sizes if part in url)

    def reset(self) -> None:
        self.bytes = 0
        self.requests = []
        self.sizes = []


def _studio(page: Any, base: str, run_id: str) -> None:
    """The studio's job page, Metrics tab: until every chart is drawn."""
    page.goto(f"{base}/studio/jobs/{run_id}#metrics")
    # Set once every chart of the answer is drawn (uPlot draws synchronously). Looked for at
    # every frame: a locator's wait looks at growing intervals (up to 500 ms apart), which
    # would time Playwright's polling rather than the page.
    page.evaluate(
        """(n) => new Promise((drawn) => {
          const look = () => document.querySelector("#charts")?.dataset.ready === String(n)
            ? drawn() : requestAnimationFrame(look);
          look();
        })""",
        METRICS,
    )
    drawn = page.locator("#charts .chart canvas").count()
    assert drawn == METRICS, f"{drawn} charts drawn, not {METRICS}"


def _mlflow(page: Any, base: str, run_id: str, experiment_id: str, wire: Wire) -> float:
    """MLflow's run page, model metrics tab: until the last metric history it asks for has
    arrived (its charts draw after that: a time in MLflow's favour). MLflow's UI keeps polling,
    so "done" is: every metric's history fetched, or none asked for in 3 s after the first."""
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [at for url, at in wire.finished_at if "get-history" in url]
        if len(done) >= METRICS or (done and time.perf_counter() - done[-1] > 3):
            return done[-1]
        page.wait_for_timeout(50)
    raise TimeoutError("MLflow's UI fetched no metric history in 120 s")


def chart_report(
    base: str, headers: dict[str, str], url: str, finished: str, live: str, rounds: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import playwright.sync_api as playwright

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        experiments = dict(
            conn.execute(
                sa.text("SELECT run_uuid, experiment_id FROM runs WHERE run_uuid IN (:a, :b)"),
                {"a": finished, "b": live},
            ).all()
        )
    engine.dispose()
    samples: dict[str, dict[str, list[float]]] = {}

    def record(case: str, seconds: float, nbytes: float) -> None:
        entry = samples.setdefault(case, {"s": [], "bytes": []})
        entry["s"].append(seconds)
        entry["bytes"].append(nbytes)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(
            extra_http_headers=headers, viewport={"width": 1440, "height": 900}
        )
        cases: list[tuple[str, Callable[[Any, Wire], float | None]]] = [
            ("studio, finished", lambda page, wire: _studio(page, base, finished)),
            (
                "MLflow UI, finished",
                lambda page, wire: _mlflow(page, base, finished, experiments[finished], wire),
            ),
            ("studio, live", lambda page, wire: _studio(page, base, live)),
            (
                "MLflow UI, live",
                lambda page, wire: _mlflow(page, base, live, experiments[live], wire),
            ),
        ]
        engine = sa.create_engine(url)
        make_live(engine, live)
        engine.dispose()
        with Logger(url, live):
            for r in range(rounds + 1):  # the first round warms caches and is not counted
                for case, open_page in cases:
                    page = context.new_page()
                    wire = Wire(page)
                    started = time.perf_counter()
                    ended = open_page(page, wire)
                    took = (ended or time.perf_counter()) - started
                    if not r and case.startswith("studio"):
                        # Cold: the server's answer cache and the browser's are empty.
                        record(f"{case} (first open)", took, wire.bytes)
                    if r:
                        record(case, took, wire.bytes)
                        fetched = sum(
                            "get-history" in u or "metric-history" in u for u in wire.requests
                        )
                        print(
                            f"  round {r} {case}: {took:.2f} s, {wire.bytes:,} bytes, "
                            f"{fetched} history requests"
                        )
                    if r and case == "studio, live":
                        # What keeping up costs: every refresh over LIVE_WATCH_S.
                        wire.reset()
                        page.wait_for_timeout(LIVE_WATCH_S * 1000)
                        history = "/studio/metric-history"
                        refreshes = sum(history in u for u in wire.requests)
                        assert refreshes, "the live page asked for no new values"
                        per = wire.bytes_for(history) / refreshes
                        record("studio, live refresh", LIVE_WATCH_S, per)
                    page.close()
                    # Requests a closed page left running (MLflow's UI asks for more than
                    # its charts, and keeps asking) end before the next case is timed.
                    time.sleep(SETTLE_S)
        browser.close()
    return _summarise(samples, rounds)


def _summarise(
    samples: dict[str, dict[str, list[float]]], rounds: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    print(f"\nCharts: a job with {METRICS} metrics x {STEPS:,} steps, Chromium, {rounds} rounds")
    print(f"{'case':<28} {'time to charts (s)':>19} {'bytes':>12}")
    results = []
    for case, entry in sorted(samples.items()):
        s, b = median(entry["s"]), median(entry["bytes"])
        shown = "(per refresh)" if "refresh" in case else f"{s:19.2f}"
        print(f"{case:<28} {shown:>19} {b:12,.0f}")
        results.append({"case": case, "seconds": s, "bytes": b})
    checked = []
    for kind in ("finished", "live"):
        studio, peer = samples[f"studio, {kind}"], samples[f"MLflow UI, {kind}"]
        s, b = median(studio["s"]), median(studio["bytes"])
        ps, pb = median(peer["s"]), median(peer["bytes"])
        print(f"{kind}: MLflow UI / studio: time x{ps / s:.1f}, bytes x{pb / max(b, 1):.1f}")
        checked.append(
            {
                "goal": f"charts, {kind}: all {METRICS} drawn <= 1 s with <= 1 MB",
                "value": f"{s:.2f} s, {b / 1e6:.2f} MB",
                "met": s <= GOALS["draw_s"] and b <= GOALS["bytes"],
            }
        )
    refresh = median(samples["studio, live refresh"]["bytes"])
    print(f"live: {refresh:,.0f} bytes per refresh (every 5 s)")
    return results, checked
