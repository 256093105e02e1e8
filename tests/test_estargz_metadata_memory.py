"""Metadata memory is bounded: a layer of huge xattrs is refused, a layer of very many empty
entries converts in bounded memory, whatever they add up to. Each runs in a child process,
as the converter does in acceld, fed from a generator, so its peak RSS is its own."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from converters.estargz import EstargzOptions, convert_layer
from converters.limits import LayerLimits
from tests.support.estargz_reader import read_estargz, walk_members
from tests.support.metadata_layers import GeneratedTar, empty_entries

ROOT = Path(__file__).resolve().parents[1]
# What LayerLimits promises for the defaults with 2 workers.
PEAK_RSS_BOUND_MIB = 640

_CHILD = """\
import io, sys
from pathlib import Path
from converters.errors import LayerRejected
from converters.estargz import EstargzOptions, convert_layer
from tests.support import metadata_layers
from tests.support.metadata_layers import GeneratedTar
from tests.support.process_memory import peak_rss_kib
source = GeneratedTar(getattr(metadata_layers, sys.argv[1])())
try:
    with open("/dev/null", "wb") as dest:
        convert_layer(source, dest, EstargzOptions(workers=2), Path(sys.argv[2]))
    outcome = "converted"
except LayerRejected as error:
    outcome = str(error)
print(peak_rss_kib() >> 10)
print(outcome)
"""


def convert_in_child(layer: str, work: Path) -> tuple[int, str]:
    """(peak RSS in MiB, "converted" or the rejection) of converting `layer` in a child."""
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, layer, str(work)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    peak, outcome = run.stdout.split("\n", 1)
    return int(peak), outcome.strip()


def test_a_thousand_entries_with_1_mib_xattrs_are_refused_in_bounded_memory(
    tmp_path: Path,
) -> None:
    peak_mib, outcome = convert_in_child("xattr_flood", tmp_path)
    assert "(limit max_layer_metadata)" in outcome
    assert peak_mib < PEAK_RSS_BOUND_MIB, f"peak RSS {peak_mib} MiB"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_400_000_empty_entries_convert_in_bounded_memory(tmp_path: Path) -> None:
    peak_mib, outcome = convert_in_child("empty_entries", tmp_path)
    assert outcome == "converted"
    # The entries themselves take about 175 MiB; one member of all their headers took 760.
    assert peak_mib < 320, f"peak RSS {peak_mib} MiB"


def test_a_long_run_of_entries_without_payload_is_cut_into_members_of_4_mib(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "layer.esgz"
    with dest.open("wb") as out:
        layer = convert_layer(
            GeneratedTar(empty_entries(20_000)),  # type: ignore[arg-type]
            out,
            EstargzOptions(workers=2),
            tmp_path,
        )
    sizes = [member.uncompressed_size for member, _ in walk_members(dest)]
    assert max(sizes) <= (4 << 20) + 1024, sizes
    assert len(sizes) > 3
    blob = read_estargz(
        dest, toc_digest=layer.toc_digest, uncompressed_size=layer.uncompressed_size
    )
    assert len(blob.tree) == 20_000


def test_default_limits_admit_a_million_plain_entries() -> None:
    limits = LayerLimits()
    assert limits.max_layer_metadata // 512 >= 1_000_000
    assert limits.max_entry_metadata >= 2 * limits.max_pax_header_size


def test_streamed_tar_reads_back_whole() -> None:
    assert io.BufferedReader(GeneratedTar(iter([b"ab", b"", b"cd"]))).read() == b"abcd"
