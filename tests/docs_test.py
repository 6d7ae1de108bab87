"""The documentation stays usable: a README that fits on a screen, a `docs/spec.md` section for
every spec citation in the code, and relative links that resolve. Plain file reads, no JAX.

Spec citations are `§N`, `§N.M`, `§N.M.K` (optionally `§ N.M`), where N may carry a letter
(`§11a`); a trailing item number as in `§11a #12` needs the `11a` section to list item 12.
A section N.M exists when `docs/spec.md` has a markdown heading (`#` to `######`) whose text
starts with `§N.M` or `N.M` followed by a space, a dot or the end of the line (`### §1.9 Input
embedding`, `## 11a. Differences`). An item #K of a section is a line of that section starting
with `K.` (a numbered list) or `| K |` (a table row).
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / 'docs'
SPEC = DOCS / 'spec.md'
README_MAX_BYTES = 12_288

CITATION = re.compile(r'§ ?(\d+[a-z]?(?:\.\d+)*)(?: ?#(\d+))?')
HEADING = re.compile(r'^#{1,6}[ \t]+§?[ \t]?(\d+[a-z]?(?:\.\d+)*)\.?(?:[ \t]|$)')
LINK = re.compile(r'\]\(([^)\s]+)(?:[ \t]+"[^"]*")?\)')


def _sources() -> list[pathlib.Path]:
  files = [
    *ROOT.glob('hrm_jax/**/*.py'),
    *ROOT.glob('experiments/**/*.py'),
    *ROOT.glob('tests/*.py'),
  ]
  return sorted(p for p in files if '__pycache__' not in p.parts)


def _citations() -> dict[tuple[str, str | None], list[str]]:
  """(section, item or None) -> the files citing it."""
  found: dict[tuple[str, str | None], list[str]] = {}
  for path in _sources():
    for m in CITATION.finditer(path.read_text(encoding='utf-8')):
      found.setdefault((m.group(1), m.group(2)), []).append(str(path.relative_to(ROOT)))
  return found


def _spec_sections() -> dict[str, list[str]]:
  """Section number -> the lines of its section (up to the next heading of any level)."""
  sections: dict[str, list[str]] = {}
  current: list[str] | None = None
  in_code = False
  for line in SPEC.read_text(encoding='utf-8').splitlines():
    if line.lstrip().startswith('```'):
      in_code = not in_code
    if not in_code and line.startswith('#'):
      m = HEADING.match(line)
      current = sections.setdefault(m.group(1), []) if m else None
      continue
    if current is not None:
      current.append(line)
  return sections


def _has_item(lines: list[str], item: str) -> bool:
  return any(re.match(rf'\s*(?:{item}\.\s|\|\s*{item}\s*\|)', line) for line in lines)


def test_readme_fits():
  size = (ROOT / 'README.md').stat().st_size
  assert size <= README_MAX_BYTES, f'README.md is {size} bytes, more than {README_MAX_BYTES}'


def test_code_finds_citations():
  # Guards the regex: the code cites the spec in many places, including an `#item` form.
  cited = _citations()
  assert len(cited) > 20
  assert any(item for _, item in cited)


def test_every_cited_section_is_in_spec():
  sections = _spec_sections()
  missing = []
  for (section, item), where in sorted(_citations().items(), key=str):
    if section not in sections:
      missing.append(f'§{section} (cited in {", ".join(sorted(set(where)))})')
    elif item is not None and not _has_item(sections[section], item):
      missing.append(f'§{section} #{item} (cited in {", ".join(sorted(set(where)))})')
  assert not missing, 'docs/spec.md lacks:\n' + '\n'.join(missing)


def _markdown_files() -> list[pathlib.Path]:
  return [ROOT / 'README.md', *sorted(DOCS.glob('*.md'))]


def _strip_code(text: str) -> str:
  """The text without fenced code blocks and inline code spans (links there are not links)."""
  text = re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)
  return re.sub(r'`[^`\n]*`', '', text)


@pytest.mark.parametrize('path', _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
  broken = []
  for target in LINK.findall(_strip_code(path.read_text(encoding='utf-8'))):
    if re.match(r'[a-z][a-z0-9+.-]*:', target, re.I) or target.startswith('#'):
      continue  # http(s)://, mailto:, an anchor of this page
    file_part = target.split('#', 1)[0]
    if not (path.parent / file_part).exists():
      broken.append(target)
  assert not broken, f'{path.relative_to(ROOT)}: links to missing files: {broken}'
