"""The documentation's examples run, its links resolve, and the README stays a landing page.

Every page under ``docs/`` holds at least one fenced ``python`` or ``sh`` block marked with an HTML
comment on the line before it (invisible once rendered):

- ``<!-- test -->``: run here, without torch (CI's ``-m 'not torch'`` runs on 3.10 and 3.13 include it);
- ``<!-- test: torch -->``: run here, marked ``torch`` (it imports torch or a framework).

Each block runs in a new process, in an empty directory on a fresh tmpfs (so the disk it measures is
small, nearly empty and the same everywhere) with ``TMPDIR`` on that tmpfs, and must exit 0; the
examples assert what they show. ``python`` blocks run with ``-W error::DeprecationWarning`` so the
docs never show a deprecated spelling; ``sh`` blocks run under ``bash -euo pipefail`` with this
interpreter's ``bin`` first on ``PATH`` (where ``diskguard`` is installed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import mounted_tmpfs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / 'docs'
README = ROOT / 'README.md'

MARK = re.compile(
    r'^<!-- test(?:: (?P<marks>[a-z ]+))? -->\n```(?P<lang>python|sh)\n(?P<code>.*?)^```$',
    re.MULTILINE | re.DOTALL,
)
FENCE = re.compile(r'^```(?P<lang>[a-z]*)\n(?P<code>.*?)^```$', re.MULTILINE | re.DOTALL)


class Example(NamedTuple):
    page: str
    line: int
    lang: str
    code: str
    torch: bool


def examples() -> list[Example]:
    found = []
    for page in sorted(DOCS.glob('*.md')):
        text = page.read_text()
        for match in MARK.finditer(text):
            marks = (match['marks'] or '').split()
            unknown = set(marks) - {'torch'}
            assert not unknown, f'{page.name}: unknown test marks {unknown}'
            line = text.count('\n', 0, match.start()) + 2
            found.append(Example(page.name, line, match['lang'], match['code'], 'torch' in marks))
    return found


def params() -> list[object]:
    return [
        pytest.param(
            example, id=f'{example.page}:{example.line}', marks=[pytest.mark.torch] if example.torch else []
        )
        for example in examples()
    ]


@pytest.mark.parametrize('example', params())
def test_the_example_runs(example: Example, tmp_path: Path) -> None:
    if example.torch:
        pytest.importorskip('torch')
    with mounted_tmpfs(tmp_path / 'fs', size='64m', nr_inodes=None) as fs:
        work, tmp = fs / 'work', fs / 'tmp'
        work.mkdir()
        tmp.mkdir()
        env = dict(
            os.environ, TMPDIR=str(tmp), PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}'
        )
        env.pop('PYTHONWARNINGS', None)
        if example.lang == 'python':
            command = [sys.executable, '-W', 'error::DeprecationWarning', '-c', example.code]
        else:
            command = ['bash', '-euo', 'pipefail', '-c', example.code]
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=240, check=False
        )
    assert done.returncode == 0, f'{example.page}:{example.line}\n{done.stdout}\n{done.stderr}'


def test_every_page_has_a_tested_example_and_plain_fences() -> None:
    pages = sorted(DOCS.glob('*.md'))
    assert {p.name for p in pages} >= {
        'guard-and-saving.md',
        'retention.md',
        'trend.md',
        'logs.md',
        'operations.md',
        'distributed.md',
        'frameworks.md',
        'measuring.md',
        'cli.md',
        'trust.md',
        'development.md',
    }
    tested = {e.page for e in examples()}
    assert tested == {p.name for p in pages}, (
        f'pages without a tested example: {sorted({p.name for p in pages} - tested)}'
    )
    # Every python block at least compiles (illustrative ones too: a typo there misleads as much).
    for page in [*pages, README]:
        for match in FENCE.finditer(page.read_text()):
            if match['lang'] == 'python':
                compile(match['code'], f'{page.name}', 'exec')


def test_a_mark_without_a_block_is_refused() -> None:
    """A `<!-- test -->` not followed by a python or sh block would silently test nothing."""
    for page in sorted(DOCS.glob('*.md')):
        text = page.read_text()
        assert len(re.findall(r'^<!-- test', text, re.MULTILINE)) == len(MARK.findall(text)), (
            f'{page.name}: a test mark on no runnable block'
        )


def local_links(text: str) -> list[str]:
    return [t for t in re.findall(r'\]\(([^)\s]+)\)', text) if not re.match(r'[a-z]+:', t)]


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r'^#+ (.+)$', FENCE.sub('', text), re.MULTILINE):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
        found.add(slug)
    return found


def test_links_between_the_readme_and_the_docs_resolve() -> None:
    for page in [README, *sorted(DOCS.glob('*.md'))]:
        for target in local_links(page.read_text()):
            name, _, anchor = target.partition('#')
            file = (page.parent / name).resolve() if name else page
            assert file.exists(), f'{page.name}: link to {target} that does not exist'
            if anchor and file.suffix == '.md':
                assert anchor in anchors(file.read_text()), f'{page.name}: link to {target}: no such heading'


def test_the_readme_is_a_landing_page_linking_every_docs_page() -> None:
    readme = README.read_text()
    lines = readme.splitlines()
    assert len(lines) <= 160, f'README.md has {len(lines)} lines: move the detail to docs/'
    # CI (.ci/run) greps the second command out of the README: the first two stay as they are.
    commands = [m['code'].strip() for m in FENCE.finditer(readme)][:2]
    assert commands == [
        "pip install '.[demo]' && diskguard demo",
        (
            'apt-get update && apt-get install -y btrfs-progs prometheus prometheus-node-exporter '
            "&& pip install -e '.[test]' && cargo test && pytest"
        ),
    ]
    linked = {Path(t.partition('#')[0]).name for t in local_links(readme) if t.startswith('docs/')}
    assert linked == {p.name for p in DOCS.glob('*.md')}
    assert '## Sharded and asynchronous checkpoints' in readme  # issue 22
    assert readme.count('callback.stop_reason') >= 2  # issue 19: how to tell, for both frameworks


def test_make_lint_and_pre_commit_run_the_lints_of_ci() -> None:
    """`make lint` and the pre-commit hooks run exactly what CI's lint step runs, in its order."""
    ci = (ROOT / '.ci' / 'run').read_text().split('echo "+ lints"\n', 1)[1]
    lints = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith('#')]
    makefile = (ROOT / 'Makefile').read_text().split('\nlint:\n', 1)[1].split('\n\n', 1)[0]
    assert [line.strip() for line in makefile.splitlines()] == lints
    hooks = re.findall(r'^\s+entry: (.+)$', (ROOT / '.pre-commit-config.yaml').read_text(), re.MULTILINE)
    assert hooks == lints
    assert (ROOT / 'LICENSE').read_text().startswith('MIT License')
    assert re.search(r'^license = \{ text = "MIT" \}', (ROOT / 'pyproject.toml').read_text(), re.MULTILINE)
