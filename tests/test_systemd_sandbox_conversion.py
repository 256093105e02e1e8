"""A real layer conversion under the shipped units' own system call filter (issue 12).

`SystemCallFilter=~@resources` denied `setpriority`, so the converter child's `os.nice(10)`
failed with EPERM and every layer failed for ever under systemd, while every test outside the
unit passed. This test builds the set of calls each unit denies from `systemd-analyze
syscall-filter` (the groups after `~`, minus the calls later lines allow back), installs it
with libseccomp through ctypes (failing with EPERM, as `SystemCallErrorNumber=EPERM` does) in
a fresh process, and converts a layer there through the converter child, as the daemon does.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.support.images import sample_layers, tar_bytes
from tests.test_systemd_units import UNITS, values

LIBSECCOMP = "libseccomp.so.2"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package systemd)",
)

# Runs in its own process: a seccomp filter can never be removed once installed.
SANDBOXED_CONVERSION = """
import ctypes, errno, json, sys
from pathlib import Path

denied, source, work = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO = 0x7FFF0000, 0x00050000
context = lib.seccomp_init(SCMP_ACT_ALLOW)
installed = 0
for name in denied:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        continue  # not a call of this architecture
    if lib.seccomp_rule_add(context, SCMP_ACT_ERRNO | errno.EPERM, number, 0) != 0:
        sys.exit(f"seccomp_rule_add {name} failed")
    installed += 1
if lib.seccomp_load(context) != 0:
    sys.exit("seccomp_load failed")

import os
try:
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 1)
    nice_allowed = True
except PermissionError:
    nice_allowed = False

from converters.estargz import EstargzOptions
from reconciler.conversion.layer_process import convert_layer_file

converted = convert_layer_file(
    source, work / "converted", "estargz", EstargzOptions(workers=2), work, timeout=120
)
print(json.dumps({"digest": converted.digest, "rules": installed, "nice": nice_allowed}))
"""


@cache
def syscall_group(name: str) -> frozenset[str]:
    """The calls of `@name`, nested groups expanded, as this systemd defines them."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", name],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    calls: set[str] = set()
    for line in listing.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= syscall_group(item) if item.startswith("@") else {item}
    return frozenset(calls)


def _expand(items: list[str]) -> set[str]:
    calls: set[str] = set()
    for item in items:
        calls |= syscall_group(item) if item.startswith("@") else {item}
    return calls


def denied_calls(unit: str) -> set[str]:
    """What the unit's `~` lines deny, minus what later allow lines give back."""
    denied: set[str] = set()
    for value in values(unit, "SystemCallFilter")[1:]:
        if value.startswith("~"):
            denied |= _expand(value[1:].split())
        else:
            denied -= _expand(value.split())
    return denied


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_a_layer_converts_under_the_units_system_call_filter(unit: str, tmp_path: Path) -> None:
    denied = denied_calls(unit)
    assert {"setrlimit", "sched_setscheduler", "mount"} <= denied
    source = tmp_path / "layer.tar.gz"
    source.write_bytes(gzip.compress(tar_bytes(sample_layers()[0]), mtime=0))
    answer = subprocess.run(
        [sys.executable, "-c", SANDBOXED_CONVERSION, json.dumps(sorted(denied)), str(source),
         str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-2000:]
    result = json.loads(answer.stdout)
    assert result["rules"] > 50
    assert result["nice"] is True
    assert result["digest"].startswith("sha256:")
