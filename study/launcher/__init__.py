"""The launcher's library half (`python -m study.launch` is its parser): its spec and every check before
Ray starts (launch_plan), one study from its spec to its tables and what follows it (pipeline), and
`--family both`, the two families' studies and the report in one command (both)."""

BOTH = "both"  # --family both: study/launcher/both.py
