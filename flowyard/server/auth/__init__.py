"""Who may do what, as pure rules: tokens and roles (``tokens``), which request needs what
(``policy``, ``mlflow_routes``). The middleware that applies them to every request is
:mod:`flowyard.server.middleware.auth`."""
