"""Local Sphinx extension of the proxy-protocol documentation.

* The API reference: at every build, one Markdown page per public module of
  the package is written to ``api/generated`` (modules and packages whose
  names have no component starting with ``_``). A page documents the names
  the module defines (its ``__all__``, or its public classes and functions)
  and links the names it only re-exports to the module that defines them,
  so every object is described exactly once.
* Optional pages: a line ``<!-- optional: NAME ... -->`` in a toctree is
  replaced by the NAMEs whose page exists (pages other people write, such
  as ``adapters`` and ``servers``), and ``<!-- other-pages -->`` by every
  other top-level page no toctree of ours lists, so that a new page never
  breaks the build with "document isn't included in any toctree".
* ``{cli-help} COMMAND`` shows the ``--help`` text of the ``proxyprotocol``
  command (or of one sub-command), taken from the parser itself.
* Links into the Python documentation without intersphinx (the build must
  work offline): builtin types in annotations, standard library objects and a
  few labels of the Python docs become links to docs.python.org.

"""

from __future__ import annotations

import builtins
import importlib
import inspect
import os
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import find_pending_xref_condition

PACKAGE = 'proxyprotocol'
GENERATED = Path('api') / 'generated'

#: Where each re-exported name is documented: ``'proxyprotocol.parse_header'``
#: -> ``'proxyprotocol.header.parse_header'``, so that references may use the
#: short import path.
REEXPORTS: dict[str, str] = {}

#: Pages this documentation itself lists in a toctree.
KNOWN_PAGES = frozenset({
    'index', 'getting-started', 'protocol', 'examples', 'security',
    'operating', 'cli', 'migration', 'api/index',
})


def discover(package: str = PACKAGE) -> list[str]:
    """The public modules of ``package``, sorted, the package first."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, package + '.',
                                      onerror=lambda name: None):
        if any(part.startswith('_') for part in info.name.split('.')[1:]):
            continue
        names.append(info.name)
    return sorted(names)


def _import(name: str, mocked: list[str]) -> ModuleType:
    # Import, mocking optional third-party packages that are not installed
    # (autodoc gets the same list, so it imports the module the same way).
    from sphinx.ext.autodoc.mock import mock
    for _ in range(10):
        try:
            with mock(list(mocked)):
                return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = (exc.name or '').split('.')[0]
            if not missing or missing == PACKAGE or missing in mocked:
                raise
            mocked.append(missing)
    raise ImportError(f'cannot import {name}')


def _assigned(module: ModuleType) -> set[str]:
    # Names the module's own source assigns at top level.
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    return set(re.findall(r'^([A-Za-z_]\w*)\s*(?::[^=\n]*)?=', source,
                          re.MULTILINE))


def split_members(module: ModuleType) -> tuple[list[str], list[tuple[str, str]]]:
    """The public names ``module`` defines, and those it re-exports (with the
    module that defines each)."""
    name = module.__name__
    public = getattr(module, '__all__', None)
    assigned = _assigned(module)
    if public is None:
        public = [n for n, obj in vars(module).items()
                  if not n.startswith('_')
                  and (inspect.isclass(obj) or inspect.isfunction(obj))
                  and getattr(obj, '__module__', None) == name]
    own: list[str] = []
    reexported: list[tuple[str, str]] = []
    for member in public:
        if member.startswith('__'):
            continue
        try:
            obj = getattr(module, member)
        except Exception:
            # A lazy attribute that cannot be made here: document it as is.
            own.append(member)
            continue
        if inspect.ismodule(obj):
            continue
        origin = getattr(obj, '__module__', None) \
            if inspect.isclass(obj) or inspect.isfunction(obj) \
            or inspect.ismethod(obj) else None
        if origin is not None and origin != name \
                and member not in assigned:
            reexported.append((member, origin))
        elif origin is None and member not in assigned:
            reexported.append((member, ''))
        else:
            own.append(member)
    return own, reexported


def _origin_of(member: str, obj: Any, modules: dict[str, ModuleType]
               ) -> str:
    # The module that assigns ``member`` (a constant, an alias) to ``obj``.
    for name, module in modules.items():
        if member in _assigned(module) and getattr(module, member, None) \
                is obj:
            return name
    return ''


def module_page(name: str, module: ModuleType,
                modules: dict[str, ModuleType]) -> str:
    """The Markdown page of one module."""
    own, reexported = split_members(module)
    reexported = [(member, origin or _origin_of(
        member, getattr(module, member, None), modules))
        for member, origin in reexported]
    for member, origin in reexported:
        if origin:
            REEXPORTS[f'{name}.{member}'] = f'{origin}.{member}'
    lines = [f'# `{name}`', '', '```{eval-rst}', f'.. automodule:: {name}']
    if own:
        lines.append(f'   :members: {", ".join(own)}')
        lines.append('   :undoc-members:')
        lines.append('   :show-inheritance:')
    lines += ['```', '']
    if reexported:
        lines += ['```{rubric} Also available here', '```', '']
        for member, origin in reexported:
            target = f'{origin}.{member}' if origin else member
            lines.append(f'- {{py:obj}}`{member} <{target}>`')
        lines.append('')
    return '\n'.join(lines)


def _write(path: Path, text: str) -> None:
    # Rewrite only on change, so that Sphinx rebuilds only what changed.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate_api(app: Sphinx) -> None:
    """Write the API pages into ``api/generated``."""
    out = Path(app.srcdir) / GENERATED
    out.mkdir(parents=True, exist_ok=True)
    _write(out / '.gitignore', '# written by docs/_ext/ppdocs.py\n*\n')
    mocked: list[str] = list(app.config.autodoc_mock_imports)
    modules = {name: _import(name, mocked) for name in discover()}
    pages = {name: module_page(name, module, modules)
             for name, module in modules.items()}
    app.config.autodoc_mock_imports = mocked
    for name, text in pages.items():
        _write(out / f'{name}.md', text)
    for stale in out.glob('*.md'):
        if stale.stem not in pages:
            stale.unlink()


_OPTIONAL = re.compile(r'^<!-- optional: ([^>]*) -->$', re.MULTILINE)
_OTHERS = '<!-- other-pages -->'


def _other_pages(srcdir: Path) -> list[str]:
    # Top-level pages that none of ours list.
    found = []
    for path in sorted(srcdir.glob('*.md')):
        if path.name == 'README.md' or path.stem in KNOWN_PAGES:
            continue
        found.append(path.stem)
    return found


def fill_toctrees(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace the optional-page markers in a page's source."""
    srcdir = Path(app.srcdir)
    text = source[0]

    def optional(match: re.Match[str]) -> str:
        names = [n for n in match.group(1).split()
                 if (srcdir / f'{n}.md').exists()]
        return '\n'.join(names)

    text = _OPTIONAL.sub(optional, text)
    if _OTHERS in text:
        elsewhere = {n for names in _OPTIONAL_ELSEWHERE.values()
                     for n in names}
        others = [n for n in _other_pages(srcdir) if n not in elsewhere]
        text = text.replace(_OTHERS, '\n'.join(others))
    source[0] = text


#: The optional pages each of our pages lists, read at startup; index does
#: not list them again.
_OPTIONAL_ELSEWHERE: dict[str, list[str]] = {}


def scan_optional(app: Sphinx) -> None:
    """Note which optional pages each of our pages lists."""
    _OPTIONAL_ELSEWHERE.clear()
    for path in Path(app.srcdir).glob('*.md'):
        names = []
        for group in _OPTIONAL.findall(path.read_text()):
            names.extend(group.split())
        if names:
            _OPTIONAL_ELSEWHERE[path.stem] = names


def outdated_markers(app: Sphinx, env: BuildEnvironment, added: set[str],
                     changed: set[str], removed: set[str]) -> list[str]:
    """Read the pages with markers again at every build: what they list
    depends on which other pages exist."""
    pages = set(_OPTIONAL_ELSEWHERE)
    for path in Path(app.srcdir).glob('*.md'):
        if _OTHERS in path.read_text():
            pages.add(path.stem)
    return sorted(pages & set(env.found_docs))


class CliHelp(SphinxDirective):
    """``{cli-help} [COMMAND]``: the ``--help`` text of ``proxyprotocol``
    (or of one of its sub-commands); ``{cli-help} MODULE:FUNCTION``: that
    of the parser FUNCTION returns (e.g. another console script's)."""

    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        os.environ['COLUMNS'] = '80'
        if self.arguments and ':' in self.arguments[0]:
            module, _, function = self.arguments[0].partition(':')
            parser = getattr(importlib.import_module(module), function)()
            text = parser.format_help().rstrip()
            block = nodes.literal_block(text, text)
            block['language'] = 'text'
            return [block]
        from proxyprotocol.cli import make_parser
        parser = make_parser()
        if self.arguments:
            actions = [a for a in parser._actions
                       if a.__class__.__name__ == '_SubParsersAction']
            choices: Any = actions[0].choices  # type: ignore[attr-defined]
            parser = choices[self.arguments[0]]
        text = parser.format_help().rstrip()
        block = nodes.literal_block(text, text)
        block['language'] = 'text'
        return [block]


PYTHON_DOCS = 'https://docs.python.org/3/'

#: Labels of the Python documentation that docstrings refer to.
PYTHON_LABELS = {
    'bufferobjects': 'c-api/buffer.html#bufferobjects',
}


def _external(url: str, title: str, children: list[nodes.Node]
              ) -> nodes.reference:
    ref = nodes.reference('', '', internal=False, refuri=url, reftitle=title)
    ref.extend(children)
    return ref


class BuiltinRefs(SphinxPostTransform):
    """Link builtin names (``type``, ``bytes``, ...) to the Python docs.

    Runs before references are resolved: otherwise a search for ``type``
    finds every attribute of that name in the package and warns that the
    reference is ambiguous.

    """

    default_priority = 5

    def run(self, **kwargs: Any) -> None:
        for node in list(self.document.findall(addnodes.pending_xref)):
            target = node.get('reftarget', '')
            if node.get('refdomain') != 'py' or '.' in target \
                    or not isinstance(getattr(builtins, target, None), type):
                continue
            if target in ('int', 'float', 'bool', 'type', 'object',
                          'complex'):
                page = 'library/functions.html'
            elif issubclass(getattr(builtins, target), BaseException):
                page = 'library/exceptions.html'
            else:
                page = 'library/stdtypes.html'
            condition = find_pending_xref_condition(node, 'resolved')
            children = list((condition or node).children)
            node.replace_self(_external(f'{PYTHON_DOCS}{page}#{target}',
                                        target, children))


def missing_reference(app: Sphinx, env: BuildEnvironment,
                      node: addnodes.pending_xref,
                      contnode: nodes.TextElement) -> Any:
    """Resolve references to the standard library and Python docs labels."""
    target = node.get('reftarget', '')
    if node.get('reftype') == 'ref' and target in PYTHON_LABELS:
        return _external(PYTHON_DOCS + PYTHON_LABELS[target], target,
                         [contnode])
    if node.get('refdomain') == 'py':
        canonical = REEXPORTS.get(target)
        if canonical is None and target.startswith('~'):
            canonical = REEXPORTS.get(target[1:])
        if canonical is not None:
            domain = env.get_domain('py')
            return domain.resolve_xref(env, node['refdoc'], app.builder,
                                       node['reftype'], canonical, node,
                                       contnode)
        top = target.split('.')[0]
        if top in sys.stdlib_module_names and top != 'typing_extensions':
            return _external(f'{PYTHON_DOCS}library/{top}.html#{target}',
                             target, [contnode])
    return None


_COLON = '\x00colon\x00'


def hide_first_colons(app: Sphinx, what: str, name: str, obj: Any,
                      options: Any, lines: list[str]) -> None:
    """Before napoleon: hide the colons of a property's or attribute's
    first line. Napoleon reads "X: text" there as a type, but here types
    come from the annotations and such a line is prose ("False only for
    LOCAL: the connection is the proxy's own"). Sections further down
    ("Raises:") are still napoleon's."""
    if what in ('property', 'attribute', 'data') and lines:
        lines[0] = lines[0].replace(':', _COLON)


def restore_colons(app: Sphinx, what: str, name: str, obj: Any,
                   options: Any, lines: list[str]) -> None:
    """After napoleon: put the hidden colons back."""
    for index, line in enumerate(lines):
        if _COLON in line:
            lines[index] = line.replace(_COLON, ':')


def setup(app: Sphinx) -> dict[str, Any]:
    # Around napoleon's handler (priority 500).
    app.connect('autodoc-process-docstring', hide_first_colons,
                priority=400)
    app.connect('autodoc-process-docstring', restore_colons, priority=600)
    app.add_post_transform(BuiltinRefs)
    app.connect('missing-reference', missing_reference)
    app.connect('builder-inited', generate_api)
    app.connect('builder-inited', scan_optional)
    app.connect('source-read', fill_toctrees)
    app.connect('env-get-outdated', outdated_markers)
    app.add_directive('cli-help', CliHelp)
    return {'version': '1', 'parallel_read_safe': True,
            'parallel_write_safe': True}
