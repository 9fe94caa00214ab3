"""utils/ stays readable: no function longer than 40 lines and no class longer than 100.

Lines are counted as code: docstrings, comments and blank lines are not, so explaining costs nothing.
"""

import ast
import io
import tokenize
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parent.parent / "utils"
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 40, 100


def code_lines(source: str) -> set[int]:
    """The numbers of the lines that hold code (not only a comment, a docstring or nothing)."""
    lines = set()
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        is_docstring = token.type == tokenize.STRING and previous in (None, tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT)
        if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENDMARKER) and not is_docstring:  # fmt: skip
            lines.update(range(token.start[0], token.end[0] + 1))
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return lines


def definitions(path: Path) -> list[tuple[str, str, int]]:
    """(kind, qualified name, code lines) of every function and class in a module."""
    source = path.read_text(encoding="utf-8")
    counted = code_lines(source)
    found = []

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                size = len([n for n in counted if child.lineno <= n <= child.end_lineno])
                found.append(("class" if isinstance(child, ast.ClassDef) else "function", name, size))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source))
    return found


MODULES = sorted(UTILS.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(UTILS)))
def test_functions_and_classes_fit_on_a_screen(path):
    too_long = [f"{kind} {name}: {size} lines" for kind, name, size in definitions(path)
                if size > (MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES)]  # fmt: skip
    assert not too_long, f"{path.name}: split into smaller pieces: {too_long}"


def test_the_count_leaves_out_docstrings_comments_and_blank_lines(tmp_path):
    module = tmp_path / "example.py"
    module.write_text('def f():\n    """Doc\n    string."""\n\n    # a comment\n    return 1\n')
    assert definitions(module) == [("function", "f", 2)]
