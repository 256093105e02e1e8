"""Which setting of the configuration a terminal error comes from, so its quarantine says how to
get out of it.

A policy change releases the keys it quarantined by itself (the fingerprint stored with the
key). A work directory budget or a layer limit too small for an image is not a policy: the
reason then names the setting and `acceld retry --all`, the command that releases the keys once
the setting is raised.
"""

from __future__ import annotations

import re

from converters.errors import LayerRejected
from reconciler.conversion.disk_budget import BudgetTooSmall

# The converters' limit errors (converters/layer_source.py, tar_reader.py).
_LIMIT_ERROR = re.compile(
    r"exceeds the limit|\(limit max_|entries so far take more than|: more than \d+ entries$"
)


def configuration_behind(error: BaseException) -> str | None:
    """The setting that made `error` happen (`work_dir_budget`, `limits`), or None."""
    if isinstance(error, BudgetTooSmall):
        return "work_dir_budget"
    if isinstance(error, LayerRejected) and _LIMIT_ERROR.search(str(error)):
        return "limits"
    return None


def quarantine_reason(error: BaseException) -> str:
    """`Type: message`, with how to release the key when the configuration caused it."""
    reason = f"{type(error).__name__}: {error}"
    setting = configuration_behind(error)
    if setting is None:
        return reason
    return f"{reason} [set by {setting}: after changing it, `acceld retry --all` releases this key]"
