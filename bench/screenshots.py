"""Screenshots of the studio's main pages at 1440 px and 390 px wide, for docs/studio.md.

Starts a fresh workspace (its config and credentials in a temporary folder), registers a
`process` compute named cpu-cluster, runs a small real sweep of the example project on it (plus
a failing job and a run logged straight through MLflow), then opens each page in Debian's
Chromium through Playwright and saves full-page PNGs.

    python bench/screenshots.py                  # into docs/img/
    python bench/screenshots.py --out /tmp/shots --runs 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sklearn_elasticnet"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
WIDTHS = {"desktop": 1440, "phone": 390}
FAILING = (
    "def check(alpha):\n    raise ValueError(f'alpha must be below 1, got {alpha}')\n\ncheck(5)\n"
)


def flowyard(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "flowyard.cli", *args], cwd=cwd, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--runs", type=int, default=8, help="runs in the example sweep")
    args = parser.parse_args()
    # Imported first: importing it points XDG_CONFIG_HOME at a folder of its own.
    from common import free_port, running

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flowyard-screenshots-") as tmp_name:
        tmp = Path(tmp_name)
        # Credentials and caches of this throwaway workspace stay in the temporary folder.
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_CACHE_HOME": str(tmp / "cache"),
            "MLFLOW_LOGGING_LEVEL": "WARNING",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        os.environ.update({k: env[k] for k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")})

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        flowyard(
            "workspace", "init", str(tmp / "ws"), "--name", "demo", "--url", url, cwd=tmp, env=env
        )
        cmd = [sys.executable, "-m", "flowyard.cli", "server", "--workspace", str(tmp / "ws")]
        cmd += ["--port", str(port)]
        with running(cmd, f"{url}/api/flowyard/v1/health", tmp / "server.log", cwd=tmp, env=env):
            env["FLOWYARD_WORKSPACE_URL"] = url
            flowyard("compute", "create", "cpu-cluster", "--type", "process", cwd=tmp, env=env)
            ids = populate(url, tmp, args.runs)
            shoot(url, ids, args.out, tmp)
    print(f"screenshots in {args.out}")
    return 0


def populate(url: str, tmp: Path, runs: int) -> dict[str, str]:
    """A sweep of the example project, a failing job and a plain MLflow run; their ids."""
    import mlflow

    from flowyard.client import Client
    from flowyard.credentials import find_token

    os.environ["MLFLOW_TRACKING_TOKEN"] = find_token(url) or ""
    mlflow.set_tracking_uri(url)
    experiment = mlflow.set_experiment("elasticnet-sweep")
    config = {"COMPUTE": "cpu-cluster", "USE_CONDA": False, "STREAM_OUTPUT": False}
    ids = []
    for i in range(runs):
        alpha, l1_ratio = round(0.1 + 0.1 * i, 2), (0.2, 0.5, 0.8)[i % 3]
        run = mlflow.projects.run(
            str(EXAMPLE),
            parameters={"alpha": alpha, "l1_ratio": l1_ratio, "steps": 10},
            backend="flowyard",
            synchronous=False,
            backend_config=config,
        )
        ids.append(str(run.run_id))
    failing = tmp / "failing"
    failing.mkdir()
    (failing / "MLproject").write_text(
        "name: failing\nentry_points:\n  main:\n    command: python main.py\n"
    )
    (failing / "main.py").write_text(FAILING)
    failed = str(
        mlflow.projects.run(
            str(failing), backend="flowyard", synchronous=False, backend_config=config
        ).run_id
    )
    with Client(url) as client:
        deadline = time.monotonic() + 600
        for run_id in [*ids, failed]:
            while not client.get_job(run_id).status.is_final:
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {run_id} did not end in 10 minutes")
                time.sleep(0.5)
    return {
        "job": ids[0],
        "failed": failed,
        "other": ids[1],
        "experiment": experiment.experiment_id,
    }


def shoot(url: str, ids: dict[str, str], out: Path, tmp: Path) -> None:
    import playwright.sync_api as playwright

    from flowyard.credentials import find_token

    pages = {
        "jobs": "/studio/jobs",
        "experiments": "/studio/experiments",
        "experiment": f"/studio/experiments/{ids['experiment']}?sort=metrics.rmse&order=asc",
        "experiment-filtered": (
            f"/studio/experiments/{ids['experiment']}?filter=metrics.rmse < 80 and "
            "params.l1_ratio = '0.5'"
        ),
        "job": f"/studio/jobs/{ids['job']}",
        "job-failed": f"/studio/jobs/{ids['failed']}",
        "compare": f"/studio/compare?ids={ids['job']},{ids['other']}",
        "computes": "/studio/computes",
    }
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing; `make studio-browser` installs it"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/studio/login")
        page.fill("input[name=token]", find_token(url) or "")
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/studio/jobs")
        for width_name, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 900})
            for name, path in pages.items():
                page.goto(url + path)
                page.wait_for_load_state("networkidle")
                target = out / f"{name}-{width_name}.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"  {target.name}")
        browser.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
