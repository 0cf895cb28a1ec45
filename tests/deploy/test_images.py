"""The Dockerfiles: a code change must not reinstall torch, torch is pinned, and docs say what the pin needs.

No Docker engine runs here. Docker's build cache reuses a layer while the instructions up to it and the files
they COPY are unchanged; `_layer_keys` computes exactly that for each RUN, so the test can change a file of
the checkout and see which installs Docker would run again. CI runs the install step itself
(docker/install.sh) in fresh virtual environments (.ci/run).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"bot": ROOT / "docker" / "bot.Dockerfile", "agent": ROOT / "docker" / "agent.Dockerfile"}


def _instructions(dockerfile: Path) -> list[str]:
    return [line for line in dockerfile.read_text().splitlines() if line and not line.startswith("#")]


def _copied_files(source: str, context: Path, changed: dict[str, bytes]) -> list[tuple[str, bytes]]:
    path = context / source
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        if path.is_dir()
        else [path]
    )
    return [
        (str(f.relative_to(context)), changed.get(str(f.relative_to(context)), f.read_bytes())) for f in files
    ]


def _layer_keys(dockerfile: Path, changed: dict[str, bytes] | None = None) -> dict[str, str]:
    """Docker's cache key of every RUN (by its text): the instructions before it and the content they COPY."""
    digest, keys = hashlib.sha256(), {}
    for line in _instructions(dockerfile):
        digest.update(line.encode())
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                for name, content in _copied_files(source, ROOT, changed or {}):
                    digest.update(name.encode() + hashlib.sha256(content).digest())
        if line.startswith("RUN "):
            keys[line] = digest.copy().hexdigest()
    return keys


def _install_step(keys: dict[str, str], role: str, step: str) -> str:
    (line,) = [line for line in keys if re.search(rf"docker/install\.sh {role} {step}\b", line)]
    return line


@pytest.mark.parametrize("role", ["bot", "agent"])
def test_a_code_change_reuses_the_dependency_layer(role: str) -> None:
    before = _layer_keys(IMAGES[role])
    deps, app = _install_step(before, role, "deps"), _install_step(before, role, "app")
    for edited in ("bot/app.py", "gpu_agent/engine/tiny.py", "storage/settings.py", "README.md"):
        after = _layer_keys(IMAGES[role], {edited: (ROOT / edited).read_bytes() + b"\n# edited\n"})
        assert after[deps] == before[deps], f"{role}: editing {edited} would reinstall the dependencies"
        assert after[app] != before[app], f"{role}: editing {edited} would not reach the image"
    manifest = _layer_keys(IMAGES[role], {"pyproject.toml": (ROOT / "pyproject.toml").read_bytes() + b"\n"})
    assert manifest[deps] != before[deps], f"{role}: a dependency change must rebuild the dependency layer"


def _torch_pin() -> str:
    (line,) = [line for line in _instructions(IMAGES["agent"]) if line.startswith("ARG TORCH_SPEC=")]
    return line.split("=", 1)[1].strip('"')


def test_the_agent_image_pins_torch_inside_the_agent_extra_and_ci_installs_the_same() -> None:
    pin = Requirement(_torch_pin())
    assert pin.name == "torch" and re.fullmatch(r"==\d+\.\d+\.\d+", str(pin.specifier)), pin
    version = str(pin.specifier).removeprefix("==")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["agent"]
    (ranged,) = [Requirement(r) for r in extra if Requirement(r).name == "torch"]
    assert ranged.specifier.contains(version), "the [agent] extra would replace the pinned torch"
    assert f'TORCH_SPEC="torch=={version}"' in (ROOT / ".ci" / "run").read_text()


def test_the_docs_state_the_driver_and_gpu_the_pinned_torch_needs() -> None:
    version = _torch_pin().removeprefix("torch==")
    hosting = (ROOT / "docs" / "SELF_HOSTING.md").read_text()
    assert f"torch {version}" in hosting and "CUDA 13.0" in hosting
    assert "driver ≥ 580" in hosting and "compute capability ≥ 7.5" in hosting
    for needed in ("FLEET_AGENT_IMAGE", "docker push", "aws ecr", "FLEET_AMI_ID", "Deep Learning Base"):
        assert needed in hosting, needed


def _dependencies(pyproject: Path, role: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "dependencies.py"), str(pyproject), role],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.splitlines()


def test_the_dependency_list_needs_only_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())  # no source beside it
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bot, agent = (
        _dependencies(tmp_path / "pyproject.toml", "bot"),
        _dependencies(tmp_path / "pyproject.toml", "agent"),
    )
    assert bot == project["dependencies"]
    assert agent == project["dependencies"] + project["optional-dependencies"]["agent"]
    assert "torch" not in {Requirement(r).name for r in bot}


def test_an_extra_naming_another_extra_of_the_project_is_expanded(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "photogen"\ndependencies = ["a>=1"]\n'
        '[project.optional-dependencies]\nml = ["b"]\nagent = ["photogen[ml]", "c<2"]\n'
    )
    assert _dependencies(tmp_path / "pyproject.toml", "agent") == ["a>=1", "c<2", "b"]


def test_the_install_step_refuses_an_unknown_role_or_step() -> None:
    for args in (["gpu"], ["bot", "everything"]):
        done = subprocess.run(
            [str(ROOT / "docker" / "install.sh"), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2 and "unknown" in done.stderr, done
