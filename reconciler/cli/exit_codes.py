"""Exit codes: a contract with users' scripts. A usage error is 1, never 2
(2 means "changes present")."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
