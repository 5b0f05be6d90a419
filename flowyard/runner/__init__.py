"""The runner: the one program that runs a job on any compute (`python -m flowyard.runner`).

Fetch the snapshot → prepare the environment → run the entry point → stream its log → upload
`./outputs` and the log → report the result. Every call to the workspace retries, so a workspace
that is away for a while loses nothing.
"""
