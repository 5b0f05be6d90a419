"""The workspace server: MLflow's tracking server app with Flowyard's API beside it.

Needs the ``server`` extra: ``pip install 'flowyard[server]'``.
"""
