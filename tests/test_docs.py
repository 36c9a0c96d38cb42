"""The documentation matches the code: generated API page, links, references to formats.md."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SKIP_DIRS = {".git", ".venv", "build", "dist", "node_modules", "__pycache__"}


def _gen_api():
    spec = importlib.util.spec_from_file_location("gen_api", DOCS / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated():
    """(generator module, the page it renders now)."""
    gen = _gen_api()
    return gen, gen.render()


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """Every heading anchor of a Markdown file (duplicates get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted(DOCS.glob("*.md"))


def _links(markdown: Path):
    in_code = False
    for number, line in enumerate(markdown.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in LINK.findall(line):
            yield number, target


def _source_files():
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIP_DIRS or p.endswith(".egg-info") or p.startswith(".") for p in parts[:-1]):
            continue
        if path.is_file() and path.suffix in (".py", ".md", ".pyx", ".yaml", ".txt", ".toml", ".cfg"):
            yield path


def test_slug_follows_github_rules():
    assert slug("300W-LP label fields") == "300w-lp-label-fields"
    assert slug("Deep3DFaceRecon BFM_model_front.mat") == "deep3dfacerecon-bfm_model_frontmat"
    assert slug("The `pt2d` and roi trap") == "the-pt2d-and-roi-trap"


def test_api_page_is_generated_from_the_code(generated):
    expected = generated[1]
    current = (DOCS / "api.md").read_text(encoding="utf-8")
    if current != expected:  # no diff dump: the page is regenerated, not edited
        pytest.fail("docs/api.md is stale: run python docs/gen_api.py", pytrace=False)


def test_api_generator_covers_every_public_module(generated):
    gen, text = generated
    names = gen.public_modules()
    assert "face3d_data.coords" in names and "face3d_data.io.datalist" in names
    assert not [n for n in names if any(p.startswith("_") for p in n.split("."))]
    # a function of coords appears with its signature and the first line of its docstring
    assert "- `matlab_to_canonical(points, height)" in text
    assert "(1-based, y up) → canonical." in text


@pytest.mark.parametrize("markdown", _markdown_files(), ids=lambda p: p.name)
def test_relative_links_point_at_existing_files(markdown):
    broken = []
    for number, target in _links(markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = markdown if not path else (markdown.parent / path)
        if not dest.exists():
            broken.append(f"{markdown.name}:{number}: {target} (no such file)")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{markdown.name}:{number}: {target} (no heading #{anchor})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_formats_references_resolve():
    """Every mention of formats.md names docs/formats.md (or links to it) and an existing section."""
    formats = DOCS / "formats.md"
    assert formats.is_file()
    sections = anchors(formats)
    bad = []
    for path in _source_files():
        if path in (formats, Path(__file__).resolve()):
            continue
        rel = path.relative_to(ROOT)
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in re.finditer(r"([\w./-]*)formats\.md(#[\w-]+)?", line):
                prefix, anchor = m.group(1), m.group(2)
                target = (path.parent / (prefix + "formats.md")).resolve()
                from_root = (ROOT / (prefix + "formats.md")).resolve()
                if formats.resolve() not in (target, from_root):
                    bad.append(f"{rel}:{number}: '{m.group(0)}' is not docs/formats.md")
                elif anchor and anchor[1:] not in sections:
                    bad.append(f"{rel}:{number}: '{m.group(0)}' has no such section")
                elif re.match(r"\s*§", line[m.end():]):
                    bad.append(f"{rel}:{number}: '{m.group(0)} §…' uses section numbers; link an anchor")
    assert not bad, "\n".join(bad)


def _resolves(name: str) -> bool:
    """Whether a dotted name is an importable module or an attribute of one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


@pytest.mark.parametrize("markdown", _markdown_files(), ids=lambda p: p.name)
def test_quoted_library_names_exist(markdown):
    """Every `face3d_data.…` / `pipelines.…` name quoted in the docs is a real module or attribute."""
    text = markdown.read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"`((?:face3d_data|pipelines)(?:\.\w+)+)", text)))
    missing = [n for n in names if not _resolves(n)]
    assert not missing, f"{markdown.name} names what the code does not have: {missing}"
