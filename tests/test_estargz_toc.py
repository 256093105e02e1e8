"""TOC JSON is laid out like Go's json.MarshalIndent; the footer is the 51-byte eStargz footer."""

from __future__ import annotations

import json
import zlib

from converters.toc import PayloadLocation, TocEntry, footer, format_modtime, toc_json_pieces

ENTRIES = [
    TocEntry(name="./", type="dir", mode=0o755, modtime=format_modtime(1_700_000_000)),
    TocEntry(
        name="bin/ping<&>",
        type="reg",
        size=5,
        mode=0o4755,
        uid=1000,
        user_name="ü",
        offset=77,
        xattrs=(("security.capability", b"\x01\x00"), ("user.x", b"")),
        digest="sha256:" + "a" * 64,
        chunk_size=4,
    ),
    TocEntry(name="bin/ping<&>", type="chunk", chunk_offset=4),
]


def test_toc_json_has_the_layout_of_go_marshal_indent() -> None:
    expected = json.dumps(
        {"version": 1, "entries": [dict(entry.fields()) for entry in ENTRIES]},
        indent="\t",
        ensure_ascii=False,
    )
    expected = expected.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    assert b"".join(toc_json_pieces(ENTRIES)).decode() == expected


def test_toc_fields_use_go_names_base64_xattrs_and_omit_zero_values() -> None:
    document = json.loads(
        b"".join(toc_json_pieces(ENTRIES, {2: PayloadLocation(900, "sha256:" + "c" * 64)}.get))
    )
    reg, chunk = document["entries"][1], document["entries"][2]
    assert list(reg) == [
        "name",
        "type",
        "size",
        "mode",
        "uid",
        "userName",
        "offset",
        "xattrs",
        "digest",
        "chunkSize",
    ]
    assert reg["xattrs"] == {"security.capability": "AQA=", "user.x": ""}
    assert reg["name"] == "bin/ping<&>"
    assert chunk == {
        "name": "bin/ping<&>",
        "type": "chunk",
        "offset": 900,
        "chunkOffset": 4,
        "chunkDigest": "sha256:" + "c" * 64,
    }
    assert document["entries"][0]["modtime"] == "2023-11-14T22:13:20Z"


def test_modtime_of_zero_is_left_out() -> None:
    assert format_modtime(0) == ""


def test_footer_is_an_empty_gzip_member_carrying_the_toc_offset() -> None:
    data = footer(0x1234ABCD)
    assert len(data) == 51
    assert data[16:38] == b"000000001234abcdSTARGZ"
    inflater = zlib.decompressobj(wbits=31)
    assert inflater.decompress(data) == b""
    assert inflater.eof
    assert inflater.unused_data == b""
