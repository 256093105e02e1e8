"""Property: any tar stream of ordinary entries survives conversion with everything intact."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters.estargz import EstargzOptions
from tests.support.estargz_roundtrip import assert_same_tree, convert_tar
from tests.support.layer_tars import Item, build_tar, item

CHUNK = 512
_COMPONENTS = st.sampled_from(["a", "b", "dir", "é", ".wh.x", "n" * 110, "sp ace"])
_NAMES = st.lists(_COMPONENTS, min_size=1, max_size=3).map("/".join)


@st.composite
def layers(draw: st.DrawFn) -> list[Item]:
    items: list[Item] = []
    files: list[str] = []
    # Unique names: a later entry of the same name would replace a hardlink's target (or the
    # hardlink itself), which the converter rightly refuses; duplicates are tested on their own.
    for name in draw(st.lists(_NAMES, min_size=1, max_size=12, unique=True)):
        kind = draw(st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "char"]))
        common = {
            "mode": draw(st.sampled_from([0o644, 0o755, 0o4755, 0o1777, 0o2750, 0o600])),
            "uid": draw(st.integers(0, 70_000)),
            "gid": draw(st.integers(0, 70_000)),
            "uname": draw(st.sampled_from(["", "root", "app"])),
            "mtime": draw(st.integers(0, 2**33)),
        }
        if kind == "file":
            size = draw(st.sampled_from([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7]))
            data = draw(st.binary(min_size=size, max_size=size))
            xattrs = draw(
                st.dictionaries(
                    st.sampled_from(["user.a", "security.b"]), st.binary(max_size=8), max_size=2
                )
            )
            items.append(
                item(
                    name,
                    data=data,
                    binary_pax={f"SCHILY.xattr.{k}": v for k, v in xattrs.items()},
                    **common,
                )
            )
            files.append(name)
        elif kind == "dir":
            items.append(item(name, tarfile.DIRTYPE, **common))
        elif kind == "symlink":
            # Targets outside the generated names: a random target could close a real loop.
            target = draw(st.sampled_from(["/usr/lib", "../elsewhere", "t/" + "x" * 120]))
            items.append(item(name, tarfile.SYMTYPE, link=target, **common))
        elif kind == "hardlink" and files:
            items.append(item(name, tarfile.LNKTYPE, link=draw(st.sampled_from(files)), **common))
        elif kind == "fifo":
            items.append(item(name, tarfile.FIFOTYPE, **common))
        elif kind == "char":
            items.append(item(name, tarfile.CHRTYPE, dev=(draw(st.integers(0, 300)), 7), **common))
    return items


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layer=layers(),
    compression=st.sampled_from(["gzip", "zstd", "none"]),
    min_chunk_size=st.sampled_from([0, 1, CHUNK, 4 * CHUNK]),
)
def test_random_tar_streams_round_trip(
    layer: list[Item], compression: str, min_chunk_size: int
) -> None:
    tar = build_tar(layer)
    options = EstargzOptions(chunk_size=CHUNK, min_chunk_size=min_chunk_size, workers=2)
    with tempfile.TemporaryDirectory() as directory:
        result = convert_tar(tar, Path(directory), options, compression)
    assert_same_tree(tar, result.blob)
