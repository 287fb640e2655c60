"""The house rules, checked: one place per deployment fact, no import circles,
server tests marked, long functions explained.

All of these read the source tree; none needs the service.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import importgraph
import pytest
from support import REPO, require

import harps_site

#: Deployment facts: a pattern that only their home may contain, and the home.
#: (Markdown documentation may quote them; etc/site.sh is generated from
#: harps_site.)
FACTS = {
    "inputs directory": (r"/var/gavo/inputs", "resdir/res/harps_site.py"),
    "DaCHS root": (r"""["'=]/var/gavo\b""", "resdir/res/harps_site.py"),
    "DaCHS admin user": (r"dachsroot", "resdir/res/harps_site.py"),
    "quiet DaCHS UI": (r"--ui=stingy", "resdir/res/harps_site.py"),
    "RD id": (r"""["']harps/q["']""", "resdir/res/harps_site.py"),
    "uid/gid lookup": (r"""get(pw|gr)nam\(["']""", "resdir/res/harps_site.py"),
    "example accref": (r"adp/2006/ADP\.2014-09-16T11_04_45\.123", "resdir/res/harps_site.py"),
    "schema_of": (r"def schema_of\b", "resdir/res/harps_site.py"),
    "MJD epoch": (r"1858", "resdir/res/harps_data/harps.py"),
}
#: Files that may repeat facts: documentation, and the generated shell copy.
NOT_CODE = re.compile(r"\.md$|^etc/site\.sh$|^shared/")


def _tracked() -> list[str]:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [f for f in files if not NOT_CODE.search(f) and (REPO / f).is_file()]


def _text(path: str) -> str:
    try:
        return (REPO / path).read_text(encoding="utf-8")
    except UnicodeDecodeError:  # binary files hold no facts
        return ""


@pytest.mark.parametrize("fact", sorted(FACTS))
def test_each_deployment_fact_is_defined_once(fact):
    pattern, home = FACTS[fact]
    me = "tests/test_layout.py"
    elsewhere = [f"{f}:{n}: {line.strip()}"
                 for f in _tracked() if f not in (home, me)
                 for n, line in enumerate(_text(f).splitlines(), 1)
                 if re.search(pattern, line)]
    assert not elsewhere, (f"the {fact} is defined in {home}; import it from there "
                           "(shell: etc/site.sh) instead of repeating it:\n"
                           + "\n".join(elsewhere))


def test_shell_copy_of_the_facts_is_up_to_date():
    """etc/site.sh is what ``harps_site.py --shell`` writes (rerun it after an edit)."""
    fresh = subprocess.run([sys.executable, str(REPO / "resdir/res/harps_site.py"), "--shell"],
                           capture_output=True, text=True, check=True).stdout
    assert (REPO / "etc" / "site.sh").read_text() == fresh, (
        "etc/site.sh is stale: python3 resdir/res/harps_site.py --shell > etc/site.sh")


def test_the_rd_declares_the_schema_harps_site_names():
    """DaCHS reads the schema from q.rd itself: it must be :data:`harps_site.RES_NAME`."""
    rd = (REPO / "resdir" / "q.rd").read_text()
    assert re.search(r'<resource schema="([^"]+)"', rd).group(1) == harps_site.RES_NAME


def test_dachs_configuration_agrees_on_the_inputs_directory():
    try:
        from gavo import base
    except ImportError:
        require(False, "DaCHS (gavo) is not importable")
    assert base.getConfig("inputsDir") == harps_site.INPUTS_DIR


def test_no_import_cycles():
    found = importgraph.cycles(importgraph.graph())
    assert not found, f"import cycles: {found}"


def test_the_import_walker_sees_a_deferred_import_as_an_edge():
    edges = importgraph.graph()
    assert "harps_service.latents" in edges["harps_service.ingest"]  # inside a function
    assert importgraph.cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def _uses_fixture(tree: ast.Module, names: set[str]) -> bool:
    """Whether a test or fixture asks for one of conftest's fixtures ``names``."""
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    return any(isinstance(n, ast.FunctionDef) and {a.arg for a in n.args.args} & (names - own)
               for n in ast.walk(tree))


def _marked_server(tree: ast.Module) -> bool:
    for node in tree.body:
        if (isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)):
            return "server" in ast.unparse(node.value)
    return False


def test_every_module_that_needs_the_service_is_marked_server():
    """``make test-fast`` (``-m 'not server'``) must never start or need DaCHS."""
    unmarked = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        if _uses_fixture(tree, {"service", "real_files"}) and not _marked_server(tree):
            unmarked.append(path.name)
    assert not unmarked, f"use the service but lack pytestmark = pytest.mark.server: {unmarked}"


def test_the_service_side_never_imports_the_learned_layer():
    """What DaCHS imports (resdir/res) is deployed without ml/: it must not need it."""
    edges = importgraph.graph()
    service = [m for m in edges if m.split(".")[0] in ("harps_site", "harps_data", "harps_service")]
    assert service
    wrong = {m: sorted(t for t in edges[m] if t.split(".")[0] == "ml") for m in service}
    assert not {m: t for m, t in wrong.items() if t}, wrong


@pytest.mark.parametrize("rd", ["resdir/q.rd", "etc/userconfig.rd"])
def test_inline_code_in_the_rds_only_calls_helpers(rd):
    """``<code>``/``<codeItems>`` outside regression tests: at most three lines."""
    text = (REPO / rd).read_text()
    text = re.sub(r"<regSuite.*?</regSuite>", "", text, flags=re.S)
    long = [block.strip() for block in re.findall(r"<code(?:Items)?>(.*?)</code(?:Items)?>",
                                                  text, flags=re.S)
            if len([line for line in block.splitlines() if line.strip()]) > 3]
    assert not long, "inline code longer than three lines (move it to res/):\n" + \
        "\n---\n".join(long)


def test_the_learned_layer_and_the_synthetic_archive_are_separate_rooms():
    """ml never imports the generator; the generator needs only the HARPS facts (and
    the project version)."""
    edges = importgraph.graph()
    assert not [m for m in edges if m.startswith("ml") and
                any(t.startswith("harps_synth") for t in edges[m])]
    synth_deps = {t.split(".")[0] for m in edges if m.startswith("harps_synth") for t in edges[m]}
    assert synth_deps <= {"harps_synth", "harps_data", "ml"}
    assert {t for m in edges if m.startswith("harps_synth") for t in edges[m]
            if t.startswith("ml")} <= {"ml"}  # ml.__version__ only


#: Longer than this, a function says in its docstring why it is not split.
MAX_LINES = 60


def test_long_functions_give_a_reason():
    long = []
    for f in _tracked():
        if not f.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(_text(f))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES and "Long because" not in (ast.get_docstring(node) or ""):
                long.append(f"{f}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, (f"functions over {MAX_LINES} lines without 'Long because ...' in their "
                      "docstring:\n" + "\n".join(long))


def _readme_tree() -> set[str]:
    """Paths drawn in the README's Layout section (two spaces of indent per level)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    paths, stack = set(), []
    for line in block.splitlines():
        if not line.strip() or line.startswith(" " * 30):  # blank or a continued description
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        stack[depth:] = [name.rstrip("/")]
        paths.add("/".join(stack) + ("/" if name.endswith("/") else ""))
    return paths


def test_the_readme_layout_matches_the_tree():
    drawn = _readme_tree()
    missing = sorted(p for p in drawn if not (REPO / p).exists())
    assert not missing, f"the README's Layout section draws paths that do not exist: {missing}"
    folders = {str(Path(f).parent) + "/" for f in _tracked() if "/" in f}
    folders |= {str(p) + "/" for f in folders for p in Path(f).parents if str(p) != "."}
    undrawn = sorted(f for f in folders if not f.startswith(".") and f not in drawn)
    assert not undrawn, f"folders missing from the README's Layout section: {undrawn}"
    modules = {f for f in _tracked() if f.endswith(".py") and f.startswith(("resdir/", "ml/"))
               and not f.endswith("__init__.py")}
    assert not sorted(modules - drawn), f"modules missing from the Layout: {modules - drawn}"
