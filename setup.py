from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="acceld",
    version="0.1.0",
    description="Keeps every image in Harbor paired with its accelerated (eStargz) copies",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["harbor_api*", "converters*", "policies*", "reconciler*"]),
    package_data={
        "reconciler": ["py.typed"],
        "harbor_api": ["py.typed"],
        "converters": ["py.typed"],
        "policies": ["py.typed"],
    },
    install_requires=[
        "requests>=2.31",
        "tenacity>=8.2",
        "prometheus-client>=0.19",
        "click>=8.1",
        "APScheduler>=3.10,<4",
        "PyYAML>=6.0",
        "waitress>=3.0",
        "werkzeug>=3.0",
        "zstandard>=0.22",
        "isal>=1.6",
        # Nydus chunk digests (nydus' default digester).
        "blake3>=0.4",
        # The state store shared by several hosts (state: backend: postgresql); the binary
        # package brings its own libpq.
        "psycopg[binary]>=3.1",
        "psycopg-pool>=3.2",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "responses>=0.25",
            "hypothesis>=6.100",
            # The swagger contract tests validate JSON against the schemas in swagger.yaml.
            "jsonschema>=4.20",
            "import-linter>=2.0",
            # The test token server signs registry JWTs (RS256) with a self-signed certificate.
            "cryptography>=42",
        ],
        "dev": [
            "ruff>=0.6",
            "mypy>=1.10",
            "types-requests",
            "types-PyYAML",
            "types-waitress",
        ],
    },
    entry_points={"console_scripts": ["acceld=reconciler.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
    ],
)
