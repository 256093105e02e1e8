"""The main job on a local real registry: push sample images, then plan, backfill, plan again.

Run by scripts/demo.sh. Uses the test suite's image builder and registry launcher so the
sample images are the same ones the tests check. It stops the registry it started and removes
its temporary directory, whatever happens.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.acceld_process import registry_config  # noqa: E402
from tests.support.images import push_image, push_index  # noqa: E402
from tests.support.registry_server import start_registry  # noqa: E402


def run(*args: str) -> int:
    print(f"\n$ acceld {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "reconciler", *args], check=False).returncode


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="acceld-demo-"))
    registry = start_registry(work / "registry")
    try:
        print(f"registry: {registry.url} (storage {work / 'registry'})")
        push_image(registry.url, "demo/web", "v1")
        push_image(registry.url, "demo/web", "v2", compression="zstd")
        push_index(registry.url, "demo/multiarch", "1.0", ["linux/amd64", "linux/arm64/v8"])
        push_image(registry.url, "scratch/tool", "v1")
        config = registry_config(
            work,
            registry.host,
            [{"name": "demo", "projects": ["demo"], "formats": ["estargz", "nydus"]}],
        )
        print(f"config: {config}\n{config.read_text()}")
        run("inspect", "--plain-http", f"{registry.host}/demo/web:v1")
        run("plan", "--config", str(config), "--output", "text")
        status = run("backfill", "--config", str(config), "--output", "text")
        run("plan", "--config", str(config), "--output", "text")
        run("inspect", "--plain-http", f"{registry.host}/demo/web:v1-esgz")
        run("inspect", "--plain-http", f"{registry.host}/demo/web:v1-nydus")
        run("status", "--config", str(config))
        return status
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
