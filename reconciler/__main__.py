"""`python -m reconciler`: the `reconcile` command."""

from reconciler.cli.main import entry

entry()
