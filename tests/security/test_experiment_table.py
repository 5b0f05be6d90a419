"""The experiment table shows what runs were given as text: a run's name, parameters, metric
and the filter a reader typed are escaped, never markup, and a reader may look but the
page needs a credential."""

from __future__ import annotations

import httpx
import mlflow as mlflow_module
import pytest
from mlflow import MlflowClient

from flowyard import defaults
from tests.factories import unstarted_job
from tests.server.test_auth import new_token
from tests.servers import Server, auth_headers

MARKUP = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def experiment(sqlite_server: Server) -> str:
    mlflow_module.set_tracking_uri(sqlite_server.url)
    try:
        ml = MlflowClient(sqlite_server.url)
        experiment_id = ml.create_experiment(f"hostile {MARKUP}")
        run = ml.create_run(experiment_id, run_name=f"run {MARKUP}")
        ml.log_param(run.info.run_id, "alpha", f"</td><script>alert(2)</script>{MARKUP}")
        ml.log_metric(run.info.run_id, "loss", 0.5)  # MLflow allows no markup in keys
        ml.set_tag(run.info.run_id, "mlflow.user", f"mallory {MARKUP}")
        ml.set_terminated(run.info.run_id)
    finally:
        mlflow_module.set_tracking_uri(None)
    return str(experiment_id)


def test_hostile_names_values_and_filters_are_text(sqlite_server: Server, experiment: str) -> None:
    url = f"{sqlite_server.url}/studio/experiments/{experiment}"
    page = httpx.get(url, headers=auth_headers(sqlite_server), timeout=30)
    assert page.status_code == 200
    body = page.text
    assert MARKUP not in body and "<script>alert" not in body
    assert "run &lt;img src=x onerror=" in body
    assert "mallory &lt;img" in body
    listing = httpx.get(
        f"{sqlite_server.url}/studio/experiments", headers=auth_headers(sqlite_server), timeout=30
    )
    assert MARKUP not in listing.text and "hostile &lt;img" in listing.text
    # A filter is echoed in the form and in MLflow's complaint about it: as text both times.
    bad = httpx.get(
        url,
        params={"filter": f"params.alpha = {MARKUP}", "sort": f"params.{MARKUP}"},
        headers=auth_headers(sqlite_server),
        timeout=30,
    )
    assert bad.status_code == 400
    assert MARKUP not in bad.text
    assert "not MLflow search syntax" in bad.text
    # A name search with both quotes is refused in one sentence, not sent to MLflow.
    quotes = httpx.get(
        url, params={"name": "a'b\"c"}, headers=auth_headers(sqlite_server), timeout=30
    )
    assert quotes.status_code == 400
    assert "cannot hold both" in quotes.text


def test_the_ranges_take_the_same_filter_as_text(sqlite_server: Server, experiment: str) -> None:
    url = f"{sqlite_server.url}/studio/experiments/{experiment}/ranges"
    ranges = httpx.get(url, headers=auth_headers(sqlite_server), timeout=30)
    assert ranges.status_code == 200
    assert 'data-key="loss"' in ranges.text and ">0.5</span>" in ranges.text
    # A filter MLflow refuses: its sentence as plain text, the markup in it inert.
    bad = httpx.get(
        url,
        params={"filter": f"params.alpha = {MARKUP}"},
        headers=auth_headers(sqlite_server),
        timeout=30,
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("text/plain")
    assert "not MLflow search syntax" in bad.text
    # A filter that selects nothing gives no ranges; an experiment that is not there, a 404.
    none = httpx.get(
        url, params={"filter": "metrics.loss > 1"}, headers=auth_headers(sqlite_server), timeout=30
    )
    assert none.status_code == 200 and "data-key" not in none.text
    missing = f"{sqlite_server.url}/studio/experiments/987654/ranges"
    assert httpx.get(missing, headers=auth_headers(sqlite_server), timeout=30).status_code == 404


@pytest.mark.parametrize("path", ["", "/ranges"])
def test_a_reader_may_look_and_no_one_else(
    sqlite_server: Server, experiment: str, path: str
) -> None:
    url = f"{sqlite_server.url}/studio/experiments/{experiment}{path}"
    reader = new_token(sqlite_server, "reader")
    ok = httpx.get(url, headers={"Authorization": f"Bearer {reader}"}, timeout=30)
    assert ok.status_code == 200
    assert httpx.get(url, timeout=30).status_code == 401
    assert (
        httpx.get(url, headers={"Authorization": "Bearer fy_nope"}, timeout=30).status_code == 401
    )


def test_a_jobs_run_names_its_submitter_and_keeps_their_note(sqlite_server: Server) -> None:
    """The run's ``mlflow.user`` is who the token says (MLflow's UI shows that tag), whatever
    the submitting machine claimed; the submitter's own description is kept, the link to the
    studio after it."""
    headers = auth_headers(sqlite_server)
    tags = {"mlflow.user": "mallory", "mlflow.note.content": "My **own** words."}
    job_id, _ = unstarted_job(sqlite_server.url, headers, tags)
    api = sqlite_server.url + defaults.API_PREFIX
    found = httpx.get(f"{api}/jobs/{job_id}", headers=headers, timeout=30).json()
    who = httpx.get(f"{api}/whoami", headers=headers, timeout=30).json()
    run = MlflowClient(sqlite_server.url).get_run(found["id"])
    assert run.data.tags["mlflow.user"] == found["user"] == who["user"] != "mallory"
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("My **own** words.\n\n")
    assert f"(/studio/jobs/{found['id']})" in note
