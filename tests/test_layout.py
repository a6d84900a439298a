"""The folder tree tells the architecture (docs/architecture.md): imports only point down the
layers, without cycles, and importing a command module starts nothing."""

import ast
import subprocess
import sys

import pytest

from helpers import REPO_DIR, cli_env

PACKAGE = REPO_DIR / 'supervised_reptile'
# Lowest first; a module may import from its own layer or the ones below it.
LAYERS = [
    {'supervised_reptile', 'errors', 'data', 'assets'},
    {'omniglot', 'miniimagenet', 'tasks', 'models', 'optimizers'},
    {'reptile', 'maml'},
    {'running'},
    {'eval', 'train'},
    {'args', 'experiment', 'tools'},
    {'fewshot', 'compare', 'export', 'lake', 'demo'},
]
COMMANDS = sorted(LAYERS[-1])


def module_name(path):
    return '.'.join(path.relative_to(REPO_DIR).with_suffix('').parts).removesuffix('.__init__')


def layer(module):
    """The layer of a dotted module name: that of its first part below the package."""
    parts = module.split('.')
    top = parts[1] if len(parts) > 1 else parts[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def is_module(dotted):
    path = REPO_DIR / dotted.replace('.', '/')
    return path.with_suffix('.py').is_file() or path.is_dir()


def imports(path):
    """The package's modules (dotted names) that the file at `path` imports, anywhere in it."""
    name, found = module_name(path), set()
    package = (name if path.name == '__init__.py' else name.rsplit('.', 1)[0]).split('.')
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = '.'.join(package[:len(package) + 1 - node.level] + [node.module or ''] if node.level
                            else [node.module]).strip('.')
            found |= {f'{base}.{a.name}' if is_module(f'{base}.{a.name}') else base for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith('supervised_reptile')} - {name}


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob('*.py'))}


@pytest.mark.parametrize('module', sorted(MODULES))
def test_imports_point_down_the_layers(module):
    upward = [m for m in MODULES[module] if layer(m) > layer(module)]
    assert not upward, f'{module} (layer {layer(module)}) imports {upward}'


def test_no_import_cycles():
    done, path = set(), []

    def visit(module):
        assert module not in path, ' -> '.join(path[path.index(module):] + [module])
        if module in done or module not in MODULES:
            return
        path.append(module)
        for target in MODULES[module]:
            visit(target)
        path.pop()
        done.add(module)
    for module in MODULES:
        visit(module)


def test_importing_a_command_starts_nothing():
    code = ('import sys\n' + ''.join(f'import supervised_reptile.{c}\n' for c in COMMANDS) +
            'assert "tensorflow" not in sys.modules, "tensorflow imported"\n')
    result = subprocess.run([sys.executable, '-c', code], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stderr, result.stderr
