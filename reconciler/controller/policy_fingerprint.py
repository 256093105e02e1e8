"""A fingerprint of what the policies ask of one format, to release quarantined keys when an
operator changes the policy (a new option may make a refused conversion succeed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from policies.model import Policy


def policy_fingerprint(policies: Iterable[Policy], fmt: str) -> str:
    wanted = [
        {
            "name": policy.name,
            "projects": [g.pattern for g in policy.projects],
            "repositories": [g.pattern for g in policy.repositories],
            "tags": [g.pattern for g in policy.tags],
            "exclude_tags": [g.pattern for g in policy.exclude_tags],
            "platforms": [str(p) for p in policy.platforms],
            "options": repr(policy.options(fmt)),
            "min_age": policy.min_age.total_seconds(),
        }
        for policy in policies
        if policy.enabled and fmt in policy.formats
    ]
    encoded = json.dumps(wanted, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]
