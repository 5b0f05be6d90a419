"""The ASGI middlewares every request passes before a route sees it: security headers, body
limits, input checks, the artifact-path guard and authentication; :mod:`flowyard.server.app`
stacks them."""
