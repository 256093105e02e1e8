from datetime import timedelta
from typing import Any

import pytest

from converters.estargz import EstargzOptions
from converters.nydus import NydusOptions
from harbor_api.oci import Platform
from policies.load import PolicyError, parse_policies
from policies.model import FormatOptions


def _error(data: Any) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policies(data, "config.yaml")
    return str(caught.value)


def test_a_minimal_policy_gets_the_documented_defaults() -> None:
    (policy,) = parse_policies([{"name": "all", "formats": ["estargz"]}], "config.yaml")
    assert policy.enabled
    assert [g.pattern for g in policy.projects] == ["*"]
    assert [g.pattern for g in policy.repositories] == ["**"]
    assert policy.tags == ()
    assert policy.exclude_tags == ()
    assert policy.platforms == ()
    assert policy.options("estargz") == FormatOptions("-esgz", EstargzOptions(compression_level=9))
    assert policy.min_age == timedelta(0)


def test_every_field_is_read() -> None:
    (policy,) = parse_policies(
        [
            {
                "name": "web",
                "enabled": False,
                "projects": ["web"],
                "repositories": ["web/**"],
                "tags": ["v*"],
                "exclude_tags": ["*-rc*"],
                "platforms": ["linux/arm64/v8"],
                "formats": ["estargz"],
                "options": {
                    "estargz": {
                        "tag_suffix": "-lazy",
                        "prioritized_files": ["/bin/sh"],
                        "compression_level": 6,
                        "min_chunk_size": "256KiB",
                    }
                },
                "min_age": "1h30m",
            }
        ],
        "config.yaml",
    )
    assert not policy.enabled
    assert [g.pattern for g in policy.tags] == ["v*"]
    assert [g.pattern for g in policy.exclude_tags] == ["*-rc*"]
    assert policy.platforms == (Platform("linux", "arm64", "v8"),)
    assert policy.options("estargz") == FormatOptions(
        "-lazy",
        EstargzOptions(
            prioritized_files=("/bin/sh",), compression_level=6, min_chunk_size=256 << 10
        ),
    )
    assert policy.min_age == timedelta(hours=1, minutes=30)


def test_nydus_options_are_parsed_into_the_converters_options() -> None:
    [policy] = parse_policies(
        [
            {
                "name": "web",
                "formats": ["estargz", "nydus"],
                "options": {
                    "nydus": {
                        "tag_suffix": "-lazy",
                        "chunk_size": "256KiB",
                        "compressor": "none",
                        "digester": "sha256",
                        "prefetch": ["/bin/sh", "/etc"],
                    }
                },
            }
        ],
        "config.yaml",
    )
    assert policy.formats == ("estargz", "nydus")
    assert policy.options("nydus") == FormatOptions(
        "-lazy",
        NydusOptions(
            chunk_size=256 << 10, compressor="none", digester="sha256", prefetch=("/bin/sh", "/etc")
        ),
    )
    assert policy.options("estargz") == FormatOptions("-esgz", EstargzOptions())


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"name": "web", "formats": ["estargz"], "tags": ["v1", "[v*"]},
            'policies[0] "web": tags[1]: invalid glob "[v*": missing "]"',
        ),
        (
            {"name": "web", "formats": ["estargz"], "tag": ["v*"]},
            'policies[0] "web": tag: unknown key (did you mean "tags"?)',
        ),
        (
            {"name": "web", "formats": ["nydus"], "options": {"nydus": {"chunk_size": "3MiB"}}},
            'policies[0] "web": options.nydus.chunk_size: chunk_size must be a power of two '
            "from 4096 (4KiB) to 16777216 (16MiB), got 3145728",
        ),
        (
            {"name": "web", "formats": ["nydus"], "options": {"nydus": {"compressor": "lz4"}}},
            'policies[0] "web": options.nydus.compressor: unknown compressor "lz4"',
        ),
        (
            {"name": "web", "formats": ["nydus"], "options": {"nydus": {"digester": "sha265"}}},
            'policies[0] "web": options.nydus.digester: unknown digester "sha265" '
            '(did you mean "sha256"?)',
        ),
        (
            {
                "name": "web",
                "formats": ["nydus"],
                "options": {"nydus": {"compression_level": 23}},
            },
            'policies[0] "web": options.nydus.compression_level: expected 1 to 22, got 23',
        ),
        (
            {"name": "web", "formats": ["nydus"], "options": {"nydus": {"prefetch": ["etc"]}}},
            "policies[0] \"web\": options.nydus.prefetch: prefetch[0]: 'etc' is not an absolute "
            "path",
        ),
        (
            {"name": "web", "formats": ["zstd-chunked"]},
            'policies[0] "web": formats[0]: format "zstd-chunked" is not supported by this version',
        ),
        (
            {"name": "web", "formats": ["estargzz"]},
            'policies[0] "web": formats[0]: unknown format "estargzz" (did you mean "estargz"?)',
        ),
        (
            {
                "name": "web",
                "formats": ["estargz"],
                "options": {"estargz": {"compression_level": 0}},
            },
            'policies[0] "web": options.estargz.compression_level: expected 1 to 9, got 0',
        ),
        (
            {
                "name": "web",
                "formats": ["estargz"],
                "options": {"estargz": {"min_chunk_size": "65MiB"}},
            },
            'policies[0] "web": options.estargz.min_chunk_size: 68157440 bytes is more than the '
            "64MiB allowed: members that large defeat lazy pulling",
        ),
        (
            {
                "name": "web",
                "formats": ["estargz"],
                "options": {"estargz": {"min_chunk_size": 4096}},
            },
            'policies[0] "web": options.estargz.min_chunk_size: expected a size like 512MiB or '
            "20GiB, got 4096",
        ),
        (
            {"name": "web", "formats": ["estargz"], "options": {"estargz": {"tag_sufix": "-x"}}},
            'policies[0] "web": options.estargz.tag_sufix: unknown key (did you mean '
            '"tag_suffix"?)',
        ),
        (
            {"name": "web", "formats": ["estargz"], "options": {"estargz": {"tag_suffix": ":x"}}},
            'policies[0] "web": options.estargz.tag_suffix: invalid tag suffix ":x": expected 1 '
            'to 32 letters, digits, "_", "." or "-"',
        ),
        (
            {"name": "web", "formats": ["estargz"], "options": {"nydus": {}}},
            'policies[0] "web": options.nydus: options for format "nydus", which formats does '
            "not list",
        ),
        (
            {"name": "web", "formats": ["estargz"], "platforms": ["linux"]},
            "policies[0] \"web\": platforms[0]: invalid platform 'linux': expected "
            "OS/ARCH[/VARIANT]",
        ),
        (
            {"name": "web", "formats": ["estargz"], "min_age": 5},
            'policies[0] "web": min_age: expected a duration like 90s, 5m, 6h or 1h30m, got 5',
        ),
        (
            {"name": "web", "formats": ["estargz"], "enabled": "yes"},
            'policies[0] "web": enabled: expected true or false, got "yes"',
        ),
        (
            {"name": "web", "formats": ["estargz"], "projects": []},
            'policies[0] "web": projects: must not be empty (leave projects out to match every '
            "name)",
        ),
        (
            {"name": "web", "formats": ["estargz"], "tags": "v*"},
            'policies[0] "web": tags: expected a list of strings, got "v*"',
        ),
        (
            {"name": "web", "formats": []},
            'policies[0] "web": formats: must list at least one format',
        ),
        (
            {"name": "web", "formats": ["estargz", "estargz"]},
            'policies[0] "web": formats[1]: format "estargz" is listed twice',
        ),
        ({"formats": ["estargz"]}, "policies[0]: name: required"),
        (
            {"name": "web team", "formats": ["estargz"]},
            'policies[0] "web team": name: invalid name "web team": expected letters, digits, '
            '"_", "." or "-" (at most 63, starting with a letter or digit)',
        ),
        ("web", 'policies[0]: expected a mapping, got "web"'),
    ],
)
def test_invalid_policies_are_rejected_naming_file_policy_and_field(
    policy: Any, message: str
) -> None:
    assert _error([policy]) == f"config.yaml: {message}"


def test_the_policy_index_counts_from_zero_across_the_list() -> None:
    policies = [
        {"name": "a", "formats": ["estargz"], "projects": ["a"]},
        {"name": "b", "formats": ["estargz"], "projects": ["b"]},
        {"name": "web", "formats": ["estargz"], "tags": ["[v*"]},
    ]
    assert (
        _error(policies)
        == 'config.yaml: policies[2] "web": tags[0]: invalid glob "[v*": missing "]"'
    )


def test_policies_must_be_a_list() -> None:
    assert (
        _error({"name": "x"}) == "config.yaml: policies: expected a list of policies, got a mapping"
    )


def test_duplicate_policy_names_are_rejected() -> None:
    policies = [
        {"name": "a", "formats": ["estargz"], "projects": ["a"]},
        {"name": "a", "formats": ["estargz"], "projects": ["b"]},
    ]
    assert _error(policies) == (
        'config.yaml: policies[1] "a": name: "a" is already the name of policies[0] "a"'
    )


def test_overlapping_policies_with_different_options_for_one_format_are_a_conflict() -> None:
    policies = [
        {"name": "all", "formats": ["estargz"]},
        {
            "name": "web",
            "formats": ["estargz"],
            "projects": ["web"],
            "options": {"estargz": {"compression_level": 5}},
        },
    ]
    assert _error(policies) == (
        'config.yaml: policies[0] "all" and policies[1] "web" may match the same repositories '
        'but want format "estargz" with different compression_level (9 and 5); make their '
        "projects or repositories disjoint, or their options equal"
    )


def test_tag_suffix_conflict_is_named() -> None:
    policies = [
        {"name": "lib", "formats": ["estargz"], "repositories": ["library/**"]},
        {
            "name": "nginx",
            "formats": ["estargz"],
            "repositories": ["library/nginx"],
            "options": {"estargz": {"tag_suffix": "-lazy"}},
        },
    ]
    assert 'different tag_suffix ("-esgz" and "-lazy")' in _error(policies)


def test_disjoint_or_disabled_policies_may_differ_in_options() -> None:
    policies = parse_policies(
        [
            {"name": "lib", "formats": ["estargz"], "repositories": ["library/**"]},
            {
                "name": "team",
                "formats": ["estargz"],
                "projects": ["team"],
                "options": {"estargz": {"compression_level": 3}},
            },
            {
                "name": "web",
                "formats": ["estargz"],
                "repositories": ["web/**"],
                "options": {"estargz": {"tag_suffix": "-lazy"}},
            },
            {
                "name": "old",
                "enabled": False,
                "formats": ["estargz"],
                "options": {"estargz": {"compression_level": 1}},
            },
        ],
        "config.yaml",
    )
    assert [p.name for p in policies] == ["lib", "team", "web", "old"]


def test_overlapping_policies_with_equal_options_load() -> None:
    policies = parse_policies(
        [
            {"name": "all", "formats": ["estargz"]},
            {"name": "web", "formats": ["estargz"], "projects": ["web"], "tags": ["v*"]},
        ],
        "config.yaml",
    )
    assert len(policies) == 2
