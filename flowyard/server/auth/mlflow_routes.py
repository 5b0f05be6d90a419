"""The role each route of MLflow's server needs, route by route.

Flowyard serves MLflow's tracking server unchanged (its FastAPI app and the Flask app mounted in
it), so its routes cannot be decorated; instead every (method, rule) the MLflow versions in
pyproject's pin register is classified by hand in :data:`TABLE`, and a request is matched to its
rule with werkzeug's router (the one Flask itself uses), so ``<path:...>`` rules match as MLflow
matches them. A path no rule matches needs an owner: a route a newer MLflow adds stays closed
until it is classified here (``tests/security/test_routes.py`` fails until then).

- reading and searching (``GET``, and MLflow's ``POST`` searches) needs ``reader``;
- tracking, registering and evaluating (create, log, update, set-tag, upload) needs
  ``contributor``;
- deleting or removing anything (``DELETE``, ``delete``, ``delete-tag``, ``remove``, ``detach``),
  and the server's own configuration (MLflow workspaces, AI gateway secrets, endpoints, budgets
  and guardrails, webhooks, and the assistant, which runs tools on the server's host) needs
  ``owner``.
"""

from __future__ import annotations

from functools import cache

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, MapAdapter, Rule

from flowyard.server.auth.tokens import Role

# One line a route: role, method, rule (werkzeug's syntax), and the MLflow version that added it
# when that is newer than the oldest MLflow in pyproject's pin (an older MLflow lacks the route,
# whose rule then matches nothing). A rule starting with ``*`` is registered twice, under ``/api``
# (clients) and ``/ajax-api`` (MLflow's UI).
TABLE = """
public       GET     /health
reader       GET     /
reader       GET     /static-files/<path:path>
reader       GET     /build/<path:filename>
reader       GET     /version
reader       GET     /get-artifact
reader       GET     /model-versions/get-artifact
reader       GET     */3.0/mlflow/server-info
# The UI's GraphQL: its only mutations are searches.
reader       GET     /graphql
reader       POST    /graphql
# The UI's usage records go to MLflow's telemetry, not into the workspace.
reader       GET     /ajax-api/3.0/mlflow/ui-telemetry
reader       POST    /ajax-api/3.0/mlflow/ui-telemetry

# Experiments
reader       GET     */2.0/mlflow/experiments/get
reader       GET     */2.0/mlflow/experiments/get-by-name
reader       GET     */2.0/mlflow/experiments/search
reader       POST    */2.0/mlflow/experiments/search
reader       POST    */2.0mlflow/experiments/search-datasets
reader       POST    /ajax-api/2.0/mlflow/experiments/search-datasets
contributor  POST    */2.0/mlflow/experiments/create
contributor  POST    */2.0/mlflow/experiments/update
contributor  POST    */2.0/mlflow/experiments/restore
contributor  POST    */2.0/mlflow/experiments/set-experiment-tag
owner        POST    */2.0/mlflow/experiments/delete
owner        POST    */2.0/mlflow/experiments/delete-experiment-tag

# Runs
reader       GET     */2.0/mlflow/runs/get
reader       POST    */2.0/mlflow/runs/search
reader       GET     */2.0/mlflow/metrics/get-history
reader       GET     */2.0/mlflow/metrics/get-history-bulk-interval
reader       GET     /ajax-api/2.0/mlflow/metrics/get-history-bulk
contributor  POST    */2.0/mlflow/runs/create
contributor  POST    /ajax-api/2.0/mlflow/runs/create-promptlab-run
contributor  POST    */2.0/mlflow/runs/update
contributor  POST    */2.0/mlflow/runs/restore
contributor  POST    */2.0/mlflow/runs/log-metric
contributor  POST    */2.0/mlflow/runs/log-parameter
contributor  POST    */2.0/mlflow/runs/log-batch
contributor  POST    */2.0/mlflow/runs/log-model
contributor  POST    */2.0/mlflow/runs/log-inputs
contributor  POST    */2.0/mlflow/runs/outputs
contributor  POST    */2.0/mlflow/runs/set-tag
owner        POST    */2.0/mlflow/runs/delete
owner        POST    */2.0/mlflow/runs/delete-tag

# Artifacts, through the tracking API and the artifact proxy
reader       GET     */2.0/mlflow/artifacts/list
reader       POST    */2.0/mlflow/artifacts/presigned-download-url               3.15
reader       GET     */2.0/mlflow-artifacts/artifacts
reader       GET     */2.0/mlflow-artifacts/artifacts/<path:artifact_path>
reader       GET     */2.0/mlflow-artifacts/presigned/<path:artifact_path>
reader       GET     /ajax-api/2.0/mlflow/get-trace-artifact
reader       GET     /ajax-api/3.0/mlflow/get-trace-artifact
contributor  POST    */2.0/mlflow/artifacts/presigned-upload-url
contributor  PUT     */2.0/mlflow-artifacts/artifacts/<path:artifact_path>
contributor  POST    /ajax-api/2.0/mlflow/upload-artifact
contributor  POST    */2.0/mlflow-artifacts/mpu/create/<path:artifact_path>
contributor  POST    */2.0/mlflow-artifacts/mpu/complete/<path:artifact_path>
# Gives up an upload that never completed (a client's own clean-up); nothing stored goes.
contributor  POST    */2.0/mlflow-artifacts/mpu/abort/<path:artifact_path>
owner        DELETE  */2.0/mlflow-artifacts/artifacts/<path:artifact_path>

# Logged models
reader       GET     */2.0/mlflow/logged-models/<model_id>
reader       POST    */2.0/mlflow/logged-models/search
reader       GET     */2.0/mlflow/logged-models/<model_id>/artifacts/directories
reader       GET     /ajax-api/2.0/mlflow/logged-models/<model_id>/artifacts/files
contributor  POST    */2.0/mlflow/logged-models
contributor  PATCH   */2.0/mlflow/logged-models/<model_id>
contributor  PATCH   */2.0/mlflow/logged-models/<model_id>/tags
contributor  POST    */2.0/mlflow/logged-models/<model_id>/params
owner        DELETE  */2.0/mlflow/logged-models/<model_id>
owner        DELETE  */2.0/mlflow/logged-models/<model_id>/tags/<tag_key>

# Model registry
reader       GET     */2.0/mlflow/registered-models/get
reader       GET     */2.0/mlflow/registered-models/search
reader       GET     */2.0/mlflow/registered-models/get-latest-versions
reader       POST    */2.0/mlflow/registered-models/get-latest-versions
reader       GET     */2.0/mlflow/registered-models/alias
reader       GET     */2.0/mlflow/model-versions/get
reader       GET     */2.0/mlflow/model-versions/search
reader       GET     */2.0/mlflow/model-versions/get-download-uri
contributor  POST    */2.0/mlflow/registered-models/create
contributor  POST    */2.0/mlflow/registered-models/rename
contributor  PATCH   */2.0/mlflow/registered-models/update
contributor  POST    */2.0/mlflow/registered-models/set-tag
contributor  POST    */2.0/mlflow/registered-models/alias
contributor  POST    */2.0/mlflow/model-versions/create
contributor  PATCH   */2.0/mlflow/model-versions/update
contributor  POST    */2.0/mlflow/model-versions/transition-stage
contributor  POST    */2.0/mlflow/model-versions/set-tag
owner        DELETE  */2.0/mlflow/registered-models/delete
owner        DELETE  */2.0/mlflow/registered-models/delete-tag
owner        DELETE  */2.0/mlflow/registered-models/alias
owner        DELETE  */2.0/mlflow/model-versions/delete
owner        DELETE  */2.0/mlflow/model-versions/delete-tag

# Traces and their assessments
reader       GET     */2.0/mlflow/traces
reader       GET     */2.0/mlflow/traces/<request_id>/info
reader       GET     */2.0/mlflow/unified-traces
reader       GET     */2.0/mlflow/get-online-trace-details
reader       GET     */3.0/mlflow/traces/<trace_id>
reader       GET     */3.0/mlflow/traces/get
reader       GET     */3.0/mlflow/traces/batchGet
reader       POST    */3.0/mlflow/traces/batchGetInfos
reader       POST    */3.0/mlflow/traces/search
reader       POST    */3.0/mlflow/traces/calculate-filter-correlation
reader       POST    */3.0/mlflow/traces/metrics
reader       GET     */3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>
contributor  POST    /v1/traces
contributor  POST    */2.0/mlflow/traces
contributor  POST    */3.0/mlflow/traces
contributor  PATCH   */2.0/mlflow/traces/<request_id>
contributor  PATCH   */2.0/mlflow/traces/<request_id>/tags
contributor  PATCH   */3.0/mlflow/traces/<trace_id>/tags
contributor  POST    */2.0/mlflow/traces/link-to-run
contributor  POST    */2.0/mlflow/traces/link-prompts
contributor  POST    */3.0/mlflow/traces/<trace_id>/assessments
contributor  PATCH   */3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>
owner        DELETE  */2.0/mlflow/traces/<request_id>/tags
owner        DELETE  */3.0/mlflow/traces/<trace_id>/tags
owner        POST    */2.0/mlflow/traces/delete-traces
owner        POST    */3.0/mlflow/traces/delete-traces
owner        DELETE  */3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>

# Issues and label schemas
reader       GET     */3.0/mlflow/issues/<issue_id>
reader       POST    */3.0/mlflow/issues/search
reader       GET     */3.0/mlflow/label-schemas/get                              3.14
reader       GET     */3.0/mlflow/label-schemas/get-by-name                      3.14
reader       GET     */3.0/mlflow/label-schemas/list                             3.14
contributor  POST    */3.0/mlflow/issues
contributor  PATCH   */3.0/mlflow/issues/<issue_id>
contributor  POST    /ajax-api/3.0/mlflow/issues/invoke
contributor  POST    */3.0/mlflow/label-schemas/create                           3.14
contributor  PATCH   */3.0/mlflow/label-schemas/update                           3.14
owner        DELETE  */3.0/mlflow/label-schemas/delete                           3.14

# Evaluation datasets
reader       GET     */3.0/mlflow/datasets/<dataset_id>
reader       GET     */3.0/mlflow/datasets/search
reader       POST    */3.0/mlflow/datasets/search
reader       GET     */3.0/mlflow/datasets/<dataset_id>/records
reader       GET     */3.0/mlflow/datasets/<dataset_id>/experiment-ids
contributor  POST    */3.0/mlflow/datasets/create
contributor  PATCH   */3.0/mlflow/datasets/<dataset_id>/tags
contributor  POST    */3.0/mlflow/datasets/<dataset_id>/records
contributor  POST    */3.0/mlflow/datasets/<dataset_id>/add-experiments
owner        DELETE  */3.0/mlflow/datasets/<dataset_id>
owner        DELETE  */3.0/mlflow/datasets/<dataset_id>/tags/<key>
owner        DELETE  */3.0/mlflow/datasets/<dataset_id>/records
owner        POST    */3.0/mlflow/datasets/<dataset_id>/remove-experiments

# Scorers, evaluation and prompt optimization
reader       GET     */3.0/mlflow/scorers/list
reader       GET     */3.0/mlflow/scorers/versions
reader       GET     */3.0/mlflow/scorers/get
reader       GET     */3.0/mlflow/scorers/online-configs
reader       GET     */3.0/mlflow/prompt-optimization/jobs/<job_id>
reader       GET     */3.0/mlflow/prompt-optimization/jobs/search
reader       POST    */3.0/mlflow/prompt-optimization/jobs/search
contributor  POST    */3.0/mlflow/scorers/register
contributor  PUT     */3.0/mlflow/scorers/online-config
contributor  POST    /ajax-api/3.0/mlflow/scorer/invoke
contributor  POST    /ajax-api/3.0/mlflow/genai/evaluate/invoke                  3.14
contributor  POST    */3.0/mlflow/prompt-optimization/jobs
contributor  POST    */3.0/mlflow/prompt-optimization/jobs/<job_id>/cancel
owner        DELETE  */3.0/mlflow/scorers/delete
owner        DELETE  */3.0/mlflow/prompt-optimization/jobs/<job_id>

# Review queues
reader       GET     */3.0/mlflow/review-queues/get                              3.14
reader       GET     */3.0/mlflow/review-queues/get-by-name                      3.14
reader       GET     */3.0/mlflow/review-queues/list                             3.14
reader       GET     */3.0/mlflow/review-queues/items/list                       3.14
contributor  POST    */3.0/mlflow/review-queues/create                           3.14
contributor  POST    */3.0/mlflow/review-queues/get-or-create-user               3.14
contributor  POST    */3.0/mlflow/review-queues/update                           3.14
contributor  POST    */3.0/mlflow/review-queues/items/add                        3.14
contributor  POST    */3.0/mlflow/review-queues/items/set-status                 3.14
owner        POST    */3.0/mlflow/review-queues/delete                           3.14
owner        POST    */3.0/mlflow/review-queues/items/remove                     3.14

# MCP server registry
reader       GET     */3.0/mlflow/mcp-servers                                    3.15
reader       GET     */3.0/mlflow/mcp-servers/endpoints                          3.15
reader       GET     */3.0/mlflow/mcp-servers/<path:name>                        3.15
reader       GET     */3.0/mlflow/mcp-servers/<path:name>/versions               3.15
reader       GET     */3.0/mlflow/mcp-servers/<path:name>/versions/<path:version> 3.15
reader       GET     */3.0/mlflow/mcp-servers/<path:name>/endpoints              3.15
reader       GET     */3.0/mlflow/mcp-servers/<path:name>/endpoints/<endpoint_id> 3.15
reader       GET     */3.0/mlflow/mcp-servers/<path:name>/aliases/<path:alias>   3.15
contributor  POST    */3.0/mlflow/mcp-servers                                    3.15
contributor  PATCH   */3.0/mlflow/mcp-servers/<path:name>                        3.15
contributor  POST    */3.0/mlflow/mcp-servers/<path:name>/versions               3.15
contributor  PATCH   */3.0/mlflow/mcp-servers/<path:name>/versions/<path:version> 3.15
contributor  POST    */3.0/mlflow/mcp-servers/<path:name>/versions/<path:version>/tags 3.15
contributor  POST    */3.0/mlflow/mcp-servers/<path:name>/endpoints              3.15
contributor  PATCH   */3.0/mlflow/mcp-servers/<path:name>/endpoints/<endpoint_id> 3.15
contributor  POST    */3.0/mlflow/mcp-servers/<path:name>/tags                   3.15
contributor  POST    */3.0/mlflow/mcp-servers/<path:name>/aliases                3.15
owner        DELETE  */3.0/mlflow/mcp-servers/<path:name>                        3.15
owner        DELETE  */3.0/mlflow/mcp-servers/<path:name>/versions/<path:version> 3.15
owner  DELETE  */3.0/mlflow/mcp-servers/<path:name>/versions/<path:version>/tags/<path:key>  3.15
owner        DELETE  */3.0/mlflow/mcp-servers/<path:name>/endpoints/<endpoint_id> 3.15
owner        DELETE  */3.0/mlflow/mcp-servers/<path:name>/tags/<path:key>        3.15
owner        DELETE  */3.0/mlflow/mcp-servers/<path:name>/aliases/<path:alias>   3.15

# MLflow's own background jobs (off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION) and its demo data
reader       GET     /ajax-api/3.0/jobs/<job_id>
reader       POST    /ajax-api/3.0/jobs/search
reader       GET     /ajax-api/3.0/mlflow/jobs/<job_id>
contributor  POST    /ajax-api/3.0/jobs/
contributor  PATCH   /ajax-api/3.0/jobs/cancel/<job_id>
contributor  PATCH   /ajax-api/3.0/mlflow/jobs/cancel/<job_id>
contributor  POST    /ajax-api/3.0/mlflow/demo/generate
owner        POST    /ajax-api/3.0/mlflow/demo/delete

# The AI gateway: calling an endpoint is using it; configuring one (keys, budgets) is the
# owner's, as computes are.
reader       GET     /gateway/mlflow/v1/models                                   3.17
reader       GET     /ajax-api/2.0/mlflow/gateway-proxy
reader       GET     /ajax-api/3.0/mlflow/gateway/supported-providers
reader       GET     /ajax-api/3.0/mlflow/gateway/supported-models
reader       GET     /ajax-api/3.0/mlflow/gateway/provider-config
reader       GET     /ajax-api/3.0/mlflow/gateway/secrets/config
reader       GET     */3.0/mlflow/gateway/secrets/get
reader       GET     */3.0/mlflow/gateway/secrets/list
reader       GET     */3.0/mlflow/gateway/endpoints/get
reader       GET     */3.0/mlflow/gateway/endpoints/list
reader       GET     */3.0/mlflow/gateway/endpoints/bindings/list
reader       GET     */3.0/mlflow/gateway/model-definitions/get
reader       GET     */3.0/mlflow/gateway/model-definitions/list
reader       GET     */3.0/mlflow/gateway/budgets/get
reader       GET     */3.0/mlflow/gateway/budgets/list
reader       GET     */3.0/mlflow/gateway/budgets/windows
reader       GET     */3.0/mlflow/gateway/guardrails/get
reader       GET     */3.0/mlflow/gateway/guardrails/list
reader       GET     */3.0/mlflow/gateway/guardrails/list-for-endpoint
contributor  POST    /ajax-api/2.0/mlflow/gateway-proxy
contributor  POST    /gateway/<endpoint_name>/mlflow/invocations
contributor  POST    /gateway/mlflow/v1/chat/completions
contributor  POST    /gateway/openai/v1/chat/completions
contributor  POST    /gateway/openai/v1/embeddings
contributor  POST    /gateway/openai/v1/responses
contributor  POST    /gateway/openai/v1/responses/compact                        3.14
contributor  POST    /gateway/anthropic/v1/messages
contributor  POST    /gateway/gemini/v1beta/models/<endpoint_name>:generateContent
contributor  POST    /gateway/gemini/v1beta/models/<endpoint_name>:streamGenerateContent
contributor  POST    /gateway/typesafe/v1/systemone                              3.17
contributor  POST    /gateway/proxy/<endpoint_name>/<path:path>                  3.13
owner        POST    */3.0/mlflow/gateway/secrets/create
owner        POST    */3.0/mlflow/gateway/secrets/update
owner        DELETE  */3.0/mlflow/gateway/secrets/delete
owner        POST    */3.0/mlflow/gateway/endpoints/create
owner        POST    */3.0/mlflow/gateway/endpoints/update
owner        DELETE  */3.0/mlflow/gateway/endpoints/delete
owner        POST    */3.0/mlflow/gateway/endpoints/set-tag
owner        DELETE  */3.0/mlflow/gateway/endpoints/delete-tag
owner        POST    */3.0/mlflow/gateway/endpoints/models/attach
owner        POST    */3.0/mlflow/gateway/endpoints/models/detach
owner        POST    */3.0/mlflow/gateway/endpoints/bindings/create
owner        DELETE  */3.0/mlflow/gateway/endpoints/bindings/delete
owner        POST    */3.0/mlflow/gateway/model-definitions/create
owner        POST    */3.0/mlflow/gateway/model-definitions/update
owner        DELETE  */3.0/mlflow/gateway/model-definitions/delete
owner        POST    */3.0/mlflow/gateway/budgets/create
owner        POST    */3.0/mlflow/gateway/budgets/update
owner        DELETE  */3.0/mlflow/gateway/budgets/delete
owner        POST    */3.0/mlflow/gateway/guardrails/create
owner        DELETE  */3.0/mlflow/gateway/guardrails/delete
owner        POST    */3.0/mlflow/gateway/guardrails/add-to-endpoint
owner        DELETE  */3.0/mlflow/gateway/guardrails/remove-from-endpoint
owner        PATCH   */3.0/mlflow/gateway/guardrails/update-config

# The server's own configuration: MLflow workspaces, webhooks (they call out to any URL), and
# the assistant (it runs tools on the server's host, and its sessions are its user's).
reader       GET     */3.0/mlflow/workspaces
reader       GET     */3.0/mlflow/workspaces/<workspace_name>
reader       GET     */2.0/mlflow/webhooks
reader       GET     */2.0/mlflow/webhooks/<webhook_id>
owner        POST    */3.0/mlflow/workspaces
owner        PATCH   */3.0/mlflow/workspaces/<workspace_name>
owner        DELETE  */3.0/mlflow/workspaces/<workspace_name>
owner        POST    */2.0/mlflow/webhooks
owner        PATCH   */2.0/mlflow/webhooks/<webhook_id>
owner        POST    */2.0/mlflow/webhooks/<webhook_id>/test
owner        DELETE  */2.0/mlflow/webhooks/<webhook_id>
owner        GET     /ajax-api/3.0/mlflow/assistant/config
owner        PUT     /ajax-api/3.0/mlflow/assistant/config
owner        GET     /ajax-api/3.0/mlflow/assistant/providers                    3.15
owner        GET     /ajax-api/3.0/mlflow/assistant/providers/<provider>/health
owner        GET     /ajax-api/3.0/mlflow/assistant/providers/<provider>/models  3.13
owner        POST    /ajax-api/3.0/mlflow/assistant/message
owner        PATCH   /ajax-api/3.0/mlflow/assistant/sessions/<session_id>
owner        GET     /ajax-api/3.0/mlflow/assistant/sessions/<session_id>/stream
owner        POST    /ajax-api/3.0/mlflow/assistant/sessions/<session_id>/permission 3.15
owner        POST    /ajax-api/3.0/mlflow/assistant/sessions/<session_id>/tool-result 3.16
owner        POST    /ajax-api/3.0/mlflow/assistant/skills/install
"""

PUBLIC = "public"  # answered without a credential: a load balancer's health probe


def _parse(table: str) -> tuple[dict[tuple[str, str], Role | None], dict[tuple[str, str], str]]:
    routes: dict[tuple[str, str], Role | None] = {}
    added_in: dict[tuple[str, str], str] = {}
    for line in table.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        role, method, rule, *since = line.split()
        rules = [f"/api{rule[1:]}", f"/ajax-api{rule[1:]}"] if rule.startswith("*") else [rule]
        for one in rules:
            if (method, one) in routes:
                raise ValueError(f"{method} {one} is classified twice in the MLflow route table")
            routes[method, one] = None if role == PUBLIC else Role.parse(role)
            if since:
                added_in[method, one] = since[0]
    return routes, added_in


ROUTES, ADDED_IN = _parse(TABLE)
"""ROUTES: (method, rule) → the least role that may call it; None for a public route.
ADDED_IN: (method, rule) → the MLflow version that added it, for the routes the oldest MLflow in
the pin lacks."""


@cache
def _adapter() -> MapAdapter:
    # strict_slashes off: a path with or without a trailing slash finds the route it means
    # instead of raising werkzeug's redirect; the app then answers it as it always does.
    rules = [
        Rule(rule, methods=[method], endpoint=role.label if role else PUBLIC)
        for (method, rule), role in ROUTES.items()
    ]
    return Map(rules, strict_slashes=False, merge_slashes=False).bind("flowyard", "/")


class Unknown(Exception):
    """No MLflow route answers this method and path."""


def role_of(method: str, path: str) -> Role | None:
    """The least role that may make this request to MLflow's server (None: public).

    Raises:
        Unknown: no route of :data:`TABLE` matches.
    """
    try:
        endpoint, _ = _adapter().match(path, method=method)
    except MethodNotAllowed:
        if method == "OPTIONS":  # Flask answers it for each of its routes; it changes nothing
            return Role.READER
        raise Unknown from None
    except HTTPException:  # not found, or a redirect werkzeug would make
        raise Unknown from None
    return None if endpoint == PUBLIC else Role.parse(str(endpoint))
