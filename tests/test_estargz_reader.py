"""The independent reader fails on blobs that break the eStargz rules (so its passes count)."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from pathlib import Path

import pytest

from tests.support.estargz_reader import read_estargz
from tests.support.estargz_roundtrip import convert_tar
from tests.support.layer_tars import build_tar, every_kind


def test_reader_rejects_a_blob_recompressed_as_one_member(tmp_path: Path) -> None:
    result = convert_tar(build_tar(every_kind()), tmp_path)
    raw = gzip.decompress(result.path.read_bytes())
    merged = tmp_path / "merged.gz"
    merged.write_bytes(gzip.compress(raw, mtime=0) + result.path.read_bytes()[-51:])
    with pytest.raises(AssertionError):
        read_estargz(merged, toc_digest=result.layer.toc_digest, uncompressed_size=len(raw))


def test_reader_rejects_a_toc_digest_other_than_the_annotation(tmp_path: Path) -> None:
    result = convert_tar(build_tar(every_kind()), tmp_path)
    with pytest.raises(AssertionError, match="TOC digest"):
        read_estargz(
            result.path,
            toc_digest="sha256:" + "0" * 64,
            uncompressed_size=result.layer.uncompressed_size,
        )


def test_reader_rejects_a_toc_whose_chunk_digest_is_wrong(tmp_path: Path) -> None:
    result = convert_tar(build_tar(every_kind()), tmp_path)
    blob = result.path.read_bytes()
    toc_offset = int(blob[-35:-19], 16)
    toc_tar = zlib.decompress(blob[toc_offset:-51], wbits=31)
    toc = json.loads(toc_tar[512:].rstrip(b"\x00"))
    victim = next(e for e in toc["entries"] if e["name"] == "bin/ping")
    victim["chunkDigest"] = "sha256:" + "1" * 64
    text = json.dumps(toc, indent="\t").encode()
    header = bytearray(toc_tar[:512])
    header[124:136] = b"%011o\x00" % len(text)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    new_tar = bytes(header) + text + b"\x00" * (-len(text) % 512) + b"\x00" * 1024
    forged = tmp_path / "forged.gz"
    member = gzip.compress(new_tar, mtime=0)
    footer = blob[-51:-35] + b"%016x" % toc_offset + blob[-19:]
    forged.write_bytes(blob[:toc_offset] + member + footer)
    with pytest.raises(AssertionError, match="chunk 0 digest"):
        read_estargz(
            forged,
            toc_digest="sha256:" + hashlib.sha256(text).hexdigest(),
            uncompressed_size=result.layer.uncompressed_size - len(toc_tar) + len(new_tar),
        )
