"""Environments for jobs: which spec a project asks for, and building it fast and safely with uv.

A job's environment is an :class:`~flowyard.jobspec.EnvironmentSpec` stored with the job (see
:func:`spec.resolve`), so any runner can build it: manager ``local`` runs in the compute's own
Python; ``uv`` builds (or reuses) a cached virtual environment.
"""
