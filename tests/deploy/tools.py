"""Finding the Debian tools that check deploy/, and reading its YAML files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Debian's python3 with python3-yaml parses the YAML files: PyYAML is not a dependency of
# srs, and a real YAML parser (not a hand-made subset) is what makes "the file parses" mean
# something.  Used in-process when the test interpreter has it.
DEBIAN_PYTHON = "/usr/bin/python3"
_YAML_TO_JSON = (
    "import json, sys, yaml\n"
    "json.dump([list(yaml.safe_load_all(open(p))) for p in sys.argv[1:]], sys.stdout)\n"
)


def tool(name: str, package: str) -> str:
    """The path of ``name`` (also looked for in the sbin directories), or skip naming the
    Debian package."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package}; "
                    "scripts/install-test-deps.sh installs it as root)")
    return path


def load_yaml(path: Path) -> list[Any]:
    """Every document of a YAML file, parsed by PyYAML's safe loader."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ModuleNotFoundError:
        pass
    else:
        with path.open() as fh:
            return list(yaml.safe_load_all(fh))
    if not os.path.exists(DEBIAN_PYTHON) or subprocess.run(
        [DEBIAN_PYTHON, "-c", "import yaml"], capture_output=True
    ).returncode:
        pytest.skip("no YAML parser (Debian package python3-yaml; "
                    "scripts/install-test-deps.sh installs it as root)")
    done = subprocess.run([DEBIAN_PYTHON, "-c", _YAML_TO_JSON, str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{path.name} is not valid YAML:\n{done.stderr}"
    return list(json.loads(done.stdout)[0])
