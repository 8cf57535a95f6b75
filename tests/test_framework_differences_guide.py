"""The framework-differences guide (docs/framework-differences.md) is a course whose every claim a test pins.

Structure checks (pure text, no framework): every section has a stable ID (``<a id="..."></a>`` before its
``### P.S title`` heading), sections are numbered P.1, P.2, ... within part P, the index table lists
exactly the sections in order, every section ends with a ``**Pinned by:**`` paragraph that cites at least
one test as ``path::test_name``, every cited test exists (the file defines ``def test_name``; a
parametrized id ``name[...]`` counts as ``name``), and the table's citations are among its section's.
Links into the guide from anywhere in the repository use IDs that exist, and nothing cites it by its
former numbers ("s. 17", "§31").

Snippet checks: every code block preceded by ``<!-- runnable: FRAMEWORKS -->`` (FRAMEWORKS from numpy,
torch, jax) is executed as a program; a block is skipped only if one of its frameworks is not installed.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "framework-differences.md"
TEXT = GUIDE.read_text(encoding="utf-8")

SECTION = re.compile(r'^<a id="(?P<id>[a-z0-9-]+)"></a>\n### (?P<number>\d+\.\d+) (?P<title>.+)$', re.MULTILINE)
PART = re.compile(r"^## (?P<number>\d+)\. (?P<title>.+)$", re.MULTILINE)
ROW = re.compile(r"^\| \[(?P<number>\d+\.\d+)\]\(#(?P<id>[a-z0-9-]+)\) \|(?P<rest>.*)\|\s*$", re.MULTILINE)
CITATION = re.compile(r"`(?P<path>[\w./-]+\.py)::(?P<name>\w+)(?:\[[^\]`]*\])?`")
PINNED = re.compile(r"\*\*Pinned by:\*\*(?P<text>.*?)(?:\n\s*\n|\Z)", re.DOTALL)
RUNNABLE = re.compile(
    r"^<!-- runnable: (?P<frameworks>[a-z ]+) -->\n```python\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL
)
MARKER = re.compile(r"^<!-- runnable:.*$", re.MULTILINE)
FRAMEWORK_MODULES = {"numpy": "numpy", "torch": "torch", "jax": "jax"}
#: The guide's runnable blocks today; fewer means markers were lost (raise it when adding blocks).
MIN_RUNNABLE = 68


def sections() -> list[dict]:
    """``[{id, number, title, body}]`` in document order; a body runs to the next section or part heading."""
    found = list(SECTION.finditer(TEXT))
    out = []
    for match in found:
        start = match.end()
        following = [m.start() for m in SECTION.finditer(TEXT, start)] + [m.start() for m in PART.finditer(TEXT, start)]
        following += [TEXT.find("\n---\n", start) if "\n---\n" in TEXT[start:] else len(TEXT)]
        out.append({**match.groupdict(), "body": TEXT[start : min(following)]})
    return out


def index_rows() -> list[dict]:
    """The index table: ``[{number, id, citations}]``; the last column holds the citations."""
    return [
        {"number": m["number"], "id": m["id"], "citations": CITATION.findall(m["rest"].rsplit("|", 1)[-1])}
        for m in ROW.finditer(TEXT)
    ]


def pinned_by(body: str) -> list[tuple[str, str]]:
    match = PINNED.search(body)
    return CITATION.findall(match["text"]) if match else []


def defines(path: str, name: str) -> bool:
    file = ROOT / path
    if not file.is_file():
        return False
    return re.search(rf"^\s*(?:async\s+)?def {name}\(", file.read_text(encoding="utf-8"), re.MULTILINE) is not None


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_parser_sees_the_whole_guide():
    parts = [int(m["number"]) for m in PART.finditer(TEXT)]
    assert parts == list(range(1, 9)), parts  # eight parts, numbered in order
    assert len(sections()) >= 40 and len(index_rows()) == len(sections())


def test_sections_have_unique_ids_and_consecutive_numbers_within_their_part():
    ids = [s["id"] for s in sections()]
    assert len(ids) == len(set(ids)), "duplicate section IDs"
    part_starts = [(m.start(), int(m["number"])) for m in PART.finditer(TEXT)]
    expected: dict[int, int] = {}
    for match in SECTION.finditer(TEXT):
        part = max(number for start, number in part_starts if start < match.start())
        expected[part] = expected.get(part, 0) + 1
        wanted = f"{part}.{expected[part]}"
        assert match["number"] == wanted, f"{match['id']} is numbered {match['number']} in part {part}, not {wanted}"


def test_index_table_lists_every_section_in_order_and_nothing_else():
    table = [(row["number"], row["id"]) for row in index_rows()]
    body = [(s["number"], s["id"]) for s in sections()]
    assert table == body


def test_every_section_cites_at_least_one_test_and_every_cited_test_exists():
    missing = []
    for section in sections():
        cited = pinned_by(section["body"])
        assert cited, f"section {section['number']} ({section['id']}) has no **Pinned by:** `path::test` citation"
        missing += [f"{section['id']}: {path}::{name}" for path, name in cited if not defines(path, name)]
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)


def test_every_table_row_cites_tests_of_its_own_section():
    bodies = {s["id"]: set(pinned_by(s["body"])) for s in sections()}
    for row in index_rows():
        assert row["citations"], f"row {row['number']} cites no test"
        for path, name in row["citations"]:
            assert defines(path, name), f"row {row['number']}: {path}::{name} does not exist"
            assert (path, name) in bodies[row["id"]], f"row {row['number']}: {path}::{name} is not in its section"


def test_citation_checker_rejects_a_missing_test():
    assert defines("tests/test_framework_differences_guide.py", "test_citation_checker_rejects_a_missing_test")
    assert not defines("tests/test_framework_differences_guide.py", "test_that_does_not_exist")
    assert not defines("tests/no_such_file.py", "test_anything")
    assert pinned_by("text\n\n**Pinned by:** `a/b.py::test_x` and\n`c.py::test_y[p-1]`.\n\nlater `d.py::test_z`") == [
        ("a/b.py", "test_x"), ("c.py", "test_y")]


def test_links_into_the_guide_resolve():
    anchors = {s["id"] for s in sections()} | {slug(m.group(0)[3:]) for m in PART.finditer(TEXT)}
    anchors |= set(re.findall(r'<a id="([a-z0-9-]+)"></a>', TEXT))
    internal = set(re.findall(r"\]\(#([^)]+)\)", TEXT))
    assert internal <= anchors, internal - anchors
    for target in re.findall(r"\]\((?!https?:|#)([^)#]+)", TEXT):
        assert (GUIDE.parent / target).exists(), f"broken link to {target}"
    broken = []
    for file in repository_files():
        text = file.read_text(encoding="utf-8", errors="replace")
        for anchor in re.findall(r"framework-differences\.md#([a-z0-9-]+)", text):
            if anchor not in anchors:
                broken.append(f"{file.relative_to(ROOT)}: #{anchor}")
    assert not broken, broken


#: Citations of the guide by number: "framework differences §36", "framework-differences.md s. 17",
#: "[framework differences](../framework-differences.md) s. 5", "sections 28–30 of [framework-differences.md]",
#: "docs/framework-differences.md (16)".
OLD_STYLE = [
    re.compile(r"framework[- ]differences(?:\.md)?\)?[\s,]*(?:§|s\.|sections?)\s*\d", re.IGNORECASE),
    re.compile(r"(?:§|\bs\.|\bsections?)\s*\d+(?:\s*[–-]\s*\d+)?\s+of\s+\[?framework[- ]differences", re.IGNORECASE),
    re.compile(r"framework-differences\.md\s*\(\d+\)", re.IGNORECASE),
]


def repository_files() -> list[Path]:
    skip = {".git", ".venv", "node_modules", "runs", "build", "dist"}
    return [
        path for pattern in ("*.md", "*.py") for path in ROOT.rglob(pattern)
        if not skip & set(path.relative_to(ROOT).parts) and path != Path(__file__).resolve()
    ]


def test_nothing_cites_the_guide_by_its_former_numbers():
    stale = []
    for file in repository_files():
        text = file.read_text(encoding="utf-8", errors="replace")
        stale += [f"{file.relative_to(ROOT)}: {m.group(0)!r}" for rule in OLD_STYLE for m in rule.finditer(text)]
    assert not stale, "cite sections by ID (framework-differences.md#id), not by number:\n" + "\n".join(stale)


def test_old_style_detector_catches_the_forms_used_before():
    for text in ["(framework differences §36)", "docs/framework-differences.md s. 17",
                 "[framework differences](../framework-differences.md)\ns. 5",
                 "sections 28–30 of [framework-differences.md]",
                 "docs/framework-differences.md\n(16) gives the measurements"]:
        assert any(rule.search(text) for rule in OLD_STYLE), text
    fine = "docs/framework-differences.md#sqrt-rounding; references/tasks.md s. 2.5"
    assert not any(rule.search(fine) for rule in OLD_STYLE)


# ------------------------------------------------------------------------------------------ snippets
def runnable_blocks() -> list[tuple[str, tuple[str, ...], int, str]]:
    """``[(section id, frameworks, line, code)]`` of every block marked ``<!-- runnable: ... -->``."""
    starts = [(m.start(), m["id"]) for m in SECTION.finditer(TEXT)]
    blocks = []
    for match in RUNNABLE.finditer(TEXT):
        owner = max((start, id_) for start, id_ in starts if start < match.start())[1] if starts else "top"
        frameworks = tuple(match["frameworks"].split())
        line = TEXT.count("\n", 0, match.start("code")) + 1
        blocks.append((owner, frameworks, line, match["code"]))
    return blocks


BLOCKS = runnable_blocks()


def test_every_runnable_marker_is_followed_by_a_python_block_and_they_are_counted():
    assert len(list(MARKER.finditer(TEXT))) == len(BLOCKS), "a runnable marker is not directly above a ```python block"
    for _, frameworks, line, _ in BLOCKS:
        assert frameworks and set(frameworks) <= set(FRAMEWORK_MODULES), f"line {line}: unknown framework {frameworks}"
    python_blocks = len(re.findall(r"^```python$", TEXT, re.MULTILINE))
    assert len(BLOCKS) >= MIN_RUNNABLE, f"only {len(BLOCKS)} of {python_blocks} python blocks are runnable"


@pytest.mark.parametrize(
    "section, frameworks, line, code", BLOCKS, ids=[f"{b[0]}-L{b[2]}-{'+'.join(b[1])}" for b in BLOCKS]
)
def test_runnable_snippet(section, frameworks, line, code):
    for framework in frameworks:
        if importlib.util.find_spec(FRAMEWORK_MODULES[framework]) is None:
            pytest.skip(f"{framework} is not installed")
    namespace = {"__name__": f"guide_{section.replace('-', '_')}"}
    # padded with newlines so that a traceback's line number is the line in the guide
    exec(compile("\n" * (line - 1) + code, str(GUIDE.relative_to(ROOT)), "exec"), namespace)  # noqa: S102
