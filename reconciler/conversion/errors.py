"""Why an image cannot be converted. All of these are terminal: the same input fails again.

Transient failures (registry down, 5xx, timeouts) stay `harbor_api.errors.RegistryError`; a
layer the converter cannot read raises `converters.errors.LayerRejected`, also terminal.
"""

from __future__ import annotations

from harbor_api.errors import PermanentError


class ConversionRefused(PermanentError):
    """The original cannot be converted; retrying it unchanged will fail the same way."""


class NotAnImage(ConversionRefused):
    """A non-image artifact: Helm chart, signature, SBOM, or anything without an image config."""


class NotAnOriginal(ConversionRefused):
    """An artifact that is itself a referrer or an accelerated copy (loop guard)."""


class UnsupportedLayer(ConversionRefused):
    """A foreign or non-distributable layer, or a layer media type no converter reads."""


class InvalidImageConfig(ConversionRefused):
    """An image config whose JSON lacks what conversion needs (`rootfs.diff_ids`)."""


class NoMatchingPlatform(ConversionRefused):
    """An index with no manifest for any of the requested platforms."""


class InvalidTarget(ConversionRefused):
    """The target tag (original tag + suffix) is not a valid tag."""


class UnsupportedFormat(ConversionRefused):
    """A format name no converter in this acceld writes."""
