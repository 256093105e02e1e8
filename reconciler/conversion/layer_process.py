"""Convert one layer file in a child process.

The daemon answers webhooks in the same process that runs conversions; the converter's Python
work (tar parsing, TOC building) holds the GIL, and two conversions in threads push webhook
answer times past Harbor's patience. A child process per layer keeps the server responsive,
bounds the converter's memory to its own process and confines a crash to one layer.

Protocol: the parent writes the options as JSON on stdin; the child prints one JSON object:
`{"layer": {...}}` on success or `{"rejected": "<reason>"}` for a bad layer (exit status 3).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from converters import estargz, nydus
from converters.errors import LayerRejected
from harbor_api.errors import AcceldError
from harbor_api.oci import OCI_LAYER_GZIP
from policies.model import LAYER_OPTIONS, LayerOptions

REJECTED_EXIT = 3

_T = typing.TypeVar("_T")


class ConverterCrashed(AcceldError):
    """The converter process died or answered nonsense; transient (retried with backoff)."""


@dataclass(frozen=True)
class ConvertedBlob:
    """A converted layer blob as the image needs it, whatever the format."""

    digest: str
    size: int
    diff_id: str
    """The digest of the layer's uncompressed stream, for the image config."""
    media_type: str
    annotations: dict[str, str]


def _options_json(format: str, options: LayerOptions) -> str:
    return json.dumps({"format": format, "options": dataclasses.asdict(options)})


def _options_from(data: dict[str, Any]) -> LayerOptions:
    return _dataclass_from(LAYER_OPTIONS[data["format"]], data["options"])


def _convert(source: BinaryIO, dest: BinaryIO, options: LayerOptions, work: Path) -> ConvertedBlob:
    if isinstance(options, nydus.NydusOptions):
        blob = nydus.convert_layer(source, dest, options, work)
        return ConvertedBlob(
            blob.digest, blob.size, blob.digest, nydus.MEDIA_TYPE_BLOB, blob.annotations()
        )
    layer = estargz.convert_layer(source, dest, options, work)
    return ConvertedBlob(
        layer.digest, layer.size, layer.diff_id, OCI_LAYER_GZIP, layer.annotations()
    )


def _dataclass_from(cls: type[_T], data: dict[str, Any]) -> _T:
    """`cls` rebuilt from `dataclasses.asdict` output: nested dataclasses and tuples again."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for option in dataclasses.fields(cls):  # type: ignore[arg-type]
        value, hint = data[option.name], hints[option.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            value = _dataclass_from(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[option.name] = value
    return cls(**values)


def convert_layer_file(
    source: Path,
    dest: Path,
    format: str,
    options: LayerOptions,
    work_dir: Path,
    *,
    timeout: float,
) -> ConvertedBlob:
    """Convert `source` into `dest` in a child process; `LayerRejected` for a bad layer."""
    try:
        answer = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler.conversion.layer_process",
                str(source),
                str(dest),
                str(work_dir),
                str(os.getpid()),
            ],
            input=_options_json(format, options),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConverterCrashed(f"converting {source.name} took over {timeout:.0f} s") from exc
    try:
        result = json.loads(answer.stdout)
    except ValueError:
        tail = answer.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConverterCrashed(
            f"converter process exited with status {answer.returncode}: {tail[0]}"
        ) from None
    if "rejected" in result:
        raise LayerRejected(str(result["rejected"]))
    return ConvertedBlob(**result["layer"])


# Conversions are batch work; the webhook server and the scheduler in the parent are not.
CHILD_NICENESS = 10


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Be killed when the parent exits (a daemon stopped past its grace period, a crash):
    this conversion's output is a temporary file only the parent would read, so an orphan
    would go on burning CPU for nothing, beside the restarted daemon converting it again."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent exited before the request was made
        sys.exit(1)


def main(argv: list[str]) -> int:
    source, dest, work_dir = (Path(arg) for arg in argv[:3])
    _die_with_parent(int(argv[3]))
    os.nice(CHILD_NICENESS)
    options = _options_from(json.loads(sys.stdin.read()))
    try:
        with source.open("rb") as src, dest.open("wb") as out:
            converted = _convert(src, out, options, work_dir)
    except LayerRejected as exc:
        print(json.dumps({"rejected": exc.reason}))
        return REJECTED_EXIT
    print(json.dumps({"layer": dataclasses.asdict(converted)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
