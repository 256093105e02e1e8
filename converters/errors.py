"""Errors the layer converters raise."""

from __future__ import annotations

from harbor_api.errors import PermanentError


class LayerRejected(PermanentError):
    """The source layer itself is bad (corrupt, truncated, unsafe, over a limit).

    Terminal: converting the same bytes again gives the same answer, so callers quarantine the
    layer instead of retrying it.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"layer rejected: {reason}")
