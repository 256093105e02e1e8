"""One layer converted in a child process: same bytes as in-process, bad layers still terminal."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from converters import nydus
from converters.errors import LayerRejected
from converters.estargz import EstargzOptions, convert_layer
from converters.limits import LayerLimits
from converters.nydus import NydusOptions
from reconciler.conversion.layer_process import ConverterCrashed, convert_layer_file
from tests.support.images import Entry, sample_layers, tar_bytes


def test_child_process_gives_the_same_blob_as_converting_in_process(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(gzip.compress(tar_bytes(sample_layers()[0]), mtime=0))
    options = EstargzOptions(chunk_size=64, compression_level=6)
    child = convert_layer_file(source, tmp_path / "child", "estargz", options, tmp_path, timeout=60)
    expected = io.BytesIO()
    with source.open("rb") as src:
        here = convert_layer(src, expected, options, tmp_path)
    assert (child.digest, child.size, child.diff_id) == (here.digest, here.size, here.diff_id)
    assert child.annotations == here.annotations()
    assert (tmp_path / "child").read_bytes() == expected.getvalue()


def test_child_process_converts_to_nydus_with_the_options_given(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(gzip.compress(tar_bytes(sample_layers()[0]), mtime=0))
    options = NydusOptions(chunk_size=4096, compressor="none", digester="sha256")
    child = convert_layer_file(source, tmp_path / "child", "nydus", options, tmp_path, timeout=60)
    expected = io.BytesIO()
    with source.open("rb") as src:
        here = nydus.convert_layer(src, expected, options, tmp_path)
    assert (child.digest, child.diff_id, child.media_type) == (
        here.digest,
        here.digest,
        nydus.MEDIA_TYPE_BLOB,
    )
    assert (tmp_path / "child").read_bytes() == expected.getvalue()


def test_a_bad_layer_is_rejected_with_the_converters_reason(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(gzip.compress(tar_bytes([Entry("../escape", data=b"x")]), mtime=0))
    with pytest.raises(LayerRejected, match=r"\.\./escape"):
        convert_layer_file(
            source, tmp_path / "out", "estargz", EstargzOptions(), tmp_path, timeout=60
        )


def test_limits_travel_to_the_child(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(gzip.compress(tar_bytes([Entry("big", data=bytes(1 << 20))]), mtime=0))
    options = EstargzOptions(limits=LayerLimits(max_uncompressed_size=64 << 10))
    with pytest.raises(LayerRejected):
        convert_layer_file(source, tmp_path / "out", "estargz", options, tmp_path, timeout=60)


def test_a_converter_that_dies_is_a_transient_error_naming_its_status(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"")
    with pytest.raises(ConverterCrashed, match="exited with status 1"):
        convert_layer_file(
            source,
            tmp_path / "out",
            "no-such-format",
            EstargzOptions(),
            tmp_path,
            timeout=60,
        )
