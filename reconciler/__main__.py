"""`python -m reconciler`: the `reconcile` command."""

from reconciler.cli.launch import entry

entry()
