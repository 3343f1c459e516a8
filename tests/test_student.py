"""`make student`: copies without solution cells run top to bottom; their checkers say "not solved yet"."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import make_student  # scripts/ is on pytest's pythonpath
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

STUB = """def my_bn(x, gamma, beta, eps=1e-5):
    raise NotImplementedError("your code here")"""
SOLUTION = """def my_bn(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    var = x.var(dim=(0, 1), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta"""
MODULE_STUB = """class MyBN(torch.nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        raise NotImplementedError("your code here")"""
MODULE_SOLUTION = "MyBN = torch.nn.BatchNorm1d"


def code(source: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = list(tags)
    return cell


def exercise_notebook() -> nbformat.NotebookNode:
    """Set-up, two exercises (a function and a module), each: stub, solution, checker."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        code(
            "import torch\nimport normlab\nnormlab.setup_notebook()\n"
            "from normlab.checks import check_batch_norm, check_batch_norm_module"
        ),
        nbformat.v4.new_markdown_cell("## Exercise"),
        code(STUB),
        code(SOLUTION, ("solution",)),
        code('check_batch_norm(my_bn, layout="NLC")'),
        code(MODULE_STUB),
        code(MODULE_SOLUTION, ("solution",)),
        code("check_batch_norm_module(MyBN)"),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


def execute(nb: nbformat.NotebookNode, where: Path) -> nbformat.NotebookNode:
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(where)}}).execute()
    return nb


def outputs_of(cell: nbformat.NotebookNode) -> str:
    return json.dumps([o.get("data", o.get("text", "")) for o in cell.get("outputs", [])])


def errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"{o['ename']}: {o['evalue']}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]


def test_student_copy_drops_solutions_keeps_stubs_and_clears_outputs():
    nb = exercise_notebook()
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="stale\n")]
    nb.cells[2].execution_count = 3
    student = make_student.student_copy(nb, "07_example.ipynb")
    sources = [c.source for c in student.cells]
    assert SOLUTION not in sources and MODULE_SOLUTION not in sources
    assert STUB in sources and MODULE_STUB in sources
    assert not any("solution" in c.metadata.get("tags", []) for c in student.cells)
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert student.cells[0].id == "student-copy-note" and "notebooks/07_example.ipynb" in student.cells[0].source
    assert len(student.cells) == len(nb.cells) - 2 + 1
    assert len(nb.cells) == 8 and nb.cells[2].execution_count == 3  # the original is untouched


def test_synthetic_student_copy_runs_and_its_checkers_say_not_solved_yet_until_the_solutions_run(tmp_path):
    """The student copy runs and its checkers say "not solved yet"; the solutions, run after it in the same
    kernel, make the same checker calls pass (so stripping the solutions is what changed them)."""
    src, dst = tmp_path / "notebooks", tmp_path / "student"
    src.mkdir()
    nbformat.write(exercise_notebook(), src / "07_example.ipynb")
    [written] = make_student.make_student_copies(src, dst)
    assert written == dst / "07_example.ipynb"
    student = nbformat.read(written, as_version=4)
    checks = [c.source for c in student.cells if c.cell_type == "code" and c.source.startswith("check_")]
    assert len(checks) == 2
    student.cells += [code(SOLUTION), code(checks[0]), code(MODULE_SOLUTION), code(checks[1])]
    student = execute(student, dst)
    assert errors(student) == []
    checkers = [c for c in student.cells if c.cell_type == "code" and c.source.startswith("check_")]
    for cell in checkers[:2]:
        text = outputs_of(cell)
        assert "not solved yet" in text and "NotImplementedError: your code here" in text
        assert "normlab-check-not-solved" in text  # the HTML rendering
    assert all(": passed" in outputs_of(c) for c in checkers[2:])


def test_make_student_writes_every_notebook_identically_twice(tmp_path):
    first = make_student.make_student_copies(ROOT / "notebooks", tmp_path / "a")
    second = make_student.make_student_copies(ROOT / "notebooks", tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in NOTEBOOKS]
    for a, b, original in zip(first, second, NOTEBOOKS):
        assert a.read_bytes() == b.read_bytes()
        copy, source = nbformat.read(a, as_version=4), nbformat.read(original, as_version=4)
        assert not any(make_student.is_solution(c) for c in copy.cells)
        kept = [c.source for c in source.cells if not make_student.is_solution(c)]
        assert [c.source for c in copy.cells[1:]] == kept


def test_main_needs_two_arguments_and_a_folder_with_notebooks(tmp_path, capsys):
    assert make_student.main([]) == 2 and "Usage" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        make_student.make_student_copies(tmp_path, tmp_path / "student")


def has_solutions(path: Path) -> bool:
    return any(make_student.is_solution(c) for c in nbformat.read(path, as_version=4).cells)


# A notebook without solution cells has a student copy with the same code (asserted above), which
# nbval already runs. In a copy that loses solution cells, every cell before the first solution is the
# original's, run in the same state: nbval runs those and the hygiene tests find no error in them. What
# only the student copy can show is how the cells after it run with the stubs in place of the solutions,
# so those are executed here, after the earlier cells that bind a name they read (found from the code).


def bound_and_read_names(source: str) -> tuple[set[str], set[str]]:
    """The names a cell binds (assigns, defines, imports) and the names it reads, anywhere in its code."""
    tree = ast.parse(source)  # the notebooks use no IPython syntax (%magic): it would stop here, not go unseen
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return bound, read


def cells_after_the_first_solution(original: nbformat.NotebookNode, student: nbformat.NotebookNode) -> list:
    """The student copy's code cells that can run differently from the original's, after the cells they need.

    Those are the cells after the original's first solution cell. They come after the set-up cell and
    every earlier cell that binds a name they read, and, in turn, the earlier cells those read from.
    """
    order = [cell.id for cell in original.cells]
    first_solution = next(i for i, cell in enumerate(original.cells) if make_student.is_solution(cell))
    code = [cell for cell in student.cells if cell.cell_type == "code"]
    after = [cell for cell in code if order.index(cell.id) > first_solution]
    before = [cell for cell in code if order.index(cell.id) < first_solution]
    needed = set().union(*(bound_and_read_names(cell.source)[1] for cell in after))
    kept = []
    for cell in reversed(before):
        bound, read = bound_and_read_names(cell.source)
        if bound & needed or cell is code[0]:  # code[0] is the set-up cell (setup_notebook)
            kept.insert(0, cell)
            needed |= read
    return kept + after


def test_the_cells_run_for_a_student_copy_are_those_after_the_first_solution_and_what_they_read():
    nb = exercise_notebook()
    nb.cells[1:1] = [code("x = torch.ones(3)"), code("import math\nunused = math.pi"), code("y = 2 * x")]
    nb.cells.insert(5, code("print(y)"))  # right after the stub: before the first solution
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    nb.cells.append(code("print(my_bn(y, 1.0, 0.0))"))
    nb.cells[-1].id = "last"
    student = make_student.student_copy(nb, "07_example.ipynb")
    kept = [cell.source for cell in cells_after_the_first_solution(nb, student)]
    # before the first solution: the set-up cell, x (read by y's cell), y (read by the last cell), the stub
    after = [
        'check_batch_norm(my_bn, layout="NLC")',
        MODULE_STUB,
        "check_batch_norm_module(MyBN)",
        "print(my_bn(y, 1.0, 0.0))",
    ]
    assert kept == [nb.cells[0].source, "x = torch.ones(3)", "y = 2 * x", STUB, *after]
    assert "print(y)" not in kept and "import math\nunused = math.pi" not in kept
    assert bound_and_read_names("z = [w for w in range(3)]\nfrom a.b import c as d, e\nimport f.g") == (
        {"z", "w", "d", "e", "f"},
        {"range", "w"},
    )


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if has_solutions(p)], ids=lambda p: p.name)
def test_student_copies_of_the_chapters_run_and_say_not_solved_yet(path):
    """Each student copy's cells after the first solution run (with what they read), from notebooks/ as the
    original does, without an error output."""
    original = nbformat.read(path, as_version=4)
    student = make_student.student_copy(original, path.name)
    student.cells = cells_after_the_first_solution(original, student)
    student = execute(student, ROOT / "notebooks")
    assert errors(student) == []
    assert any("not solved yet" in outputs_of(c) for c in student.cells)
