"""The tree's layout holds: layering contracts, no import cycles, and every package shipped (wheel, Dockerfile)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
# Top-level product packages: every folder at the root with an __init__.py, except tests and benchmarks.
PACKAGES = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in {"tests", "bench"})


def test_the_tree_has_the_rooms_the_readme_names() -> None:
    assert PACKAGES == ["bridge", "cli", "connectors", "core", "sandbox", "scoring", "services", "storage", "tasks"]


def test_import_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml (layering) are kept."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), str(REPO / "pyproject.toml"), "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        # Iterative: the graph is deep enough to trouble Python's recursion limit.
        nonlocal counter
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[module] = min(low[module], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1 or module in graph.find_modules_directly_imported_by(module):
                        found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_between_modules() -> None:
    """No module imports itself through others: imports inside functions and under TYPE_CHECKING count too."""
    sys.path.insert(0, str(REPO))
    try:
        graph = grimp.build_graph(*PACKAGES, include_external_packages=False, exclude_type_checking_imports=False,
                                  cache_dir=None)
    finally:
        sys.path.remove(str(REPO))
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    """The check above can fail: a cycle made only by an import inside a function is found."""
    package = tmp_path / "cyclepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclepkg import b\n")
    (package / "b.py").write_text("def late():\n    from cyclepkg import a\n    return a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cyclepkg import c\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("cyclepkg", exclude_type_checking_imports=False, cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert _cycles(graph) == [["cyclepkg.a", "cyclepkg.b"], ["cyclepkg.c"]]


def test_the_wheel_ships_and_imports_every_package(tmp_path: Path) -> None:
    """A wheel built from the tree holds every top-level package, and each imports from it (not from the tree)."""
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__",
                                                                  "tests", "bench", "test-output"))
    # Verbose: pip shows the build backend's own output only then, and with it setuptools' warnings. Offline.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--verbose", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    # No warning about our pyproject.toml (the `license` table form once gave one per build step on `make run`).
    # setuptools raises them from its pyproject readers (config/_apply_pyprojecttoml.py, pyprojecttoml.py).
    output = built.stdout + built.stderr
    ours = [line.strip() for line in output.splitlines()
            if "Warning" in line and ("pyproject" in line or "`project." in line)]
    assert not ours, "setuptools warns about pyproject.toml:\n" + "\n".join(ours)
    (wheel,) = (tmp_path / "dist").glob("leadbridge-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.split("/", 1)[0] for name in archive.namelist() if "/" in name}
        archive.extractall(site)
    assert set(PACKAGES) <= shipped, f"missing from the wheel: {sorted(set(PACKAGES) - shipped)}"
    # Import each package and all its modules from the unpacked wheel, in a process whose first path entry is it.
    probe = (
        "import importlib, pkgutil, sys\n"
        f"site = {str(site)!r}\n"
        "sys.path.insert(0, site)\n"
        f"for name in {PACKAGES!r}:\n"
        "    package = importlib.import_module(name)\n"
        "    assert package.__file__.startswith(site), (name, package.__file__)\n"
        "    for info in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        "        if not info.name.endswith('__main__') and '.migrations.' not in info.name:\n"
        "            importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    ran = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stderr[-3000:]
    # Migrations, templates and static files travel with the code.
    suffixes = {".py", ".mako", ".html", ".css", ".js", ".json", ".xml"}
    data = {str(path.relative_to(REPO)) for package in PACKAGES for path in (REPO / package).rglob("*")
            if path.suffix in suffixes and "__pycache__" not in path.parts}
    missing = sorted(name for name in data if not (site / name).exists())
    assert not missing, f"files of the tree missing from the wheel: {missing[:20]}"


def test_the_dockerfile_copies_every_package() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, flags=re.MULTILINE))
    assert set(PACKAGES) <= copied, f"deploy/Dockerfile does not copy: {sorted(set(PACKAGES) - copied)}"


def test_the_web_process_loads_no_model_libraries() -> None:
    """The web app (webhooks, admin, API) never trains or scores: scikit-learn, XGBoost, River and pandas would add
    ~250 MB to each gunicorn process (scikit-learn alone ~120 MB, reached once through the admin's charts)."""
    probe = ("import sys; from bridge import create_app; create_app(); "
             "print(','.join(m for m in ('sklearn', 'xgboost', 'river', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], check=False, cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "LEADBRIDGE_DATA_DIR": str(Path(tempfile.mkdtemp()))})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([""], []), out.stdout
