"""The README and docs/ stay true: every command they show parses with the flags the tool
really has, and the README stays a front door."""

import pathlib
import re
import shlex

import pytest

from supervised_reptile import args, compare, demo, export, fewshot, lake

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent
PAGES = [REPO_DIR / 'README.md', *sorted((REPO_DIR / 'docs').glob('*.md'))]
PARSERS = {
    'run_omniglot.py': lambda: args.argument_parser('data/omniglot', omniglot=True),
    'run_miniimagenet.py': lambda: args.argument_parser('data/miniimagenet'),
    **{name: module.argument_parser for module in (compare, demo, export, fewshot, lake)
       for name in (f'supervised_reptile.{module.__name__.rsplit(".", 1)[1]}',
                    f'reptile-{module.__name__.rsplit(".", 1)[1]}')},
}
SHELL_BLOCK = re.compile(r'```(?:shell|bash|sh)\n(.*?)```', re.DOTALL)
ENDS = {'|', '>', '2>', '&&', ';', '&', '||'}


def commands(page):
    """(tool, argv) of each command of a tool in the page's shell blocks, with the variables
    assigned earlier in a block (`shared="..."`) expanded."""
    for block in SHELL_BLOCK.findall(page.read_text()):
        variables = {}
        for line in block.replace('\\\n', ' ').splitlines():
            if assignment := re.fullmatch(r'(\w+)="([^"]*)"', line):
                variables[assignment[1]] = assignment[2]
            line = re.sub(r'\$(\w+)', lambda m: variables.get(m[1], m[0]), line)
            words = shlex.split(line, comments=True)
            words = words[:next((i for i, w in enumerate(words) if w in ENDS), len(words))]
            tool = next((i for i, w in enumerate(words) if w in PARSERS), None)
            if tool is not None:
                yield words[tool], words[tool + 1:]


CASES = [(page.name, tool, argv) for page in PAGES for tool, argv in commands(page)]


def test_the_readme_is_a_front_door():
    assert len((REPO_DIR / 'README.md').read_text().splitlines()) <= 250
    assert len(CASES) >= 10


@pytest.mark.parametrize('page, tool, argv', CASES, ids=[f'{p}:{t}:{i}' for i, (p, t, _) in enumerate(CASES)])
def test_every_documented_command_parses(page, tool, argv):
    args.parse(PARSERS[tool](), argv)
