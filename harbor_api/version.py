"""acceld's own version, as installed."""

from importlib.metadata import PackageNotFoundError, version

try:
    ACCELD_VERSION = version("acceld")
except PackageNotFoundError:  # running from a source tree that was never installed
    ACCELD_VERSION = "0.0.0+unknown"

USER_AGENT = f"acceld/{ACCELD_VERSION}"
