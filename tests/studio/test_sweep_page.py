"""The studio's sweep page in a real browser: a real sweep with median pruning on the studio's
process compute shows its progress, its best value so far, its trials as parallel coordinates
and as a table best first, each with why it ended, under the studio's Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

import mlflow
from playwright.sync_api import Page, expect

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.servers import Server

PROJECT = Path(__file__).resolve().parents[1] / "projects" / "sweep"


def test_a_sweep_page_shows_progress_best_so_far_and_trials(
    page: Page, workspace: Server, client: Client, screenshots: Path
) -> None:
    run = mlflow.projects.run(
        str(PROJECT),
        parameters={"steps": 6, "step_s": 0.3, "y": -1},
        backend="flowyard",
        backend_config={
            "COMPUTE": "cpu",
            "USE_CONDA": False,
            "STREAM_OUTPUT": False,
            "SWEEP": {
                "search_space": {
                    "x": {"type": "uniform", "low": -6, "high": 6},
                    "kind": {"type": "choice", "values": ["good", "bad"]},
                },
                "sampling": {"algorithm": "random", "seed": 21},
                "objective": {"metric": "loss"},
                "limits": {"max_trials": 10, "max_concurrent_trials": 4},
                "early_termination": {"policy": "median", "delay_evaluation": 1},
            },
        },
    )
    sweep = client.get_sweep(run.run_id)
    assert sweep.job.status == JobStatus.COMPLETED
    page.goto(f"{workspace.url}/studio/jobs/{run.run_id}")
    page.click("#sweep-link")
    page.wait_for_url(f"{workspace.url}/studio/sweeps/{run.run_id}")
    expect(page.locator("#progress")).to_contain_text("10 of 10 trials:")
    expect(page.locator("#best-so-far polyline")).to_have_count(1)
    drawn = [t for t in sweep.trials if t.value is not None]
    expect(page.locator("#parallel polyline")).to_have_count(len(drawn))
    expect(page.locator("#parallel .axis-name")).to_have_text(["x", "kind", "loss"])
    rows = page.locator("#trials tbody tr")
    expect(rows).to_have_count(10)
    numbers = [int(n) for n in rows.evaluate_all("rs => rs.map(r => r.dataset.trial)")]
    assert numbers == [t.number for t in sweep.trials]  # best first
    for trial in sweep.trials:
        if trial.state == "pruned":
            row = page.locator(f'#trials tr[data-trial="{trial.number}"]')
            expect(row).to_contain_text("stopped early by median policy at step")
    page.screenshot(path=str(screenshots / "sweep.png"), full_page=True)
    print(f"screenshot: {screenshots / 'sweep.png'}")

    # Compare the sweep, not ten ids: every trial, one legend, the best marked everywhere.
    page.click("#compare-trials")
    page.wait_for_url(f"{workspace.url}/studio/compare?sweep={run.run_id}")
    expect(page.locator("#compare-source")).to_contain_text(f"the 10 trials of sweep {run.run_id}")
    expect(page.locator("#compare-cut")).to_have_count(0)
    expect(page.locator("#compare-legend li")).to_have_count(10)
    expect(page.locator("#best-metric")).to_have_value("loss")
    best = page.locator("#compare-set").get_attribute("data-best")
    assert best == sweep.best_trial_id
    expect(page.locator(f"#compare-legend li.best[data-run='{best}']")).to_contain_text("best")
    expect(page.locator("#parallel polyline")).to_have_count(10)
    expect(page.locator(f"#parallel polyline.best[data-run='{best}']")).to_have_count(1)
    expect(page.locator("#parallel .axis-name")).to_have_text(["kind", "x", "loss"])
    expect(page.locator("#scatter circle")).to_have_count(10)
    expect(page.locator(f"#scatter circle.best[data-run='{best}']")).to_have_count(1)
    page.select_option("#best-goal", "max")
    assert page.locator("#compare-set").get_attribute("data-best") != best
    expect(page.locator("#compare-charts .chart[data-metric='loss']")).to_have_attribute(
        "data-lines", "10"
    )
    page.screenshot(path=str(screenshots / "compare-sweep.png"), full_page=True)
