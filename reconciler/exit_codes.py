"""The exit statuses of every `acceld` command, each defined once (the operator guide lists
them). Scripts and systemd units branch on them, so they never change meaning."""

from __future__ import annotations

OK = 0
"""Done; for `backfill`, everything converged."""
FAILED = 1
"""The command ran and something failed: a source that does not answer or refuses the
credentials, a conversion that failed or was quarantined, nothing to retry."""
USAGE = 2
"""The command line or the config file is wrong; nothing was done."""
INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT) or SIGTERM before it finished."""
