"""The pushed notebook (`make notebook`, `make push FORMAT=notebook`): a kernel's own code cut into cells.

Most Kaggle competitors read and fork notebooks. A kernel marks its story's breaks with `# %%` lines (jupytext's
percent format, which editors such as VS Code and Spyder run cell by cell too); jupytext cuts the source there and
nbformat writes and validates the notebook:

    markdown     the kernel's docstring, its first line as the title
    code         the kit's src package and its unpacker (`bundle.unpacker_code`), its source collapsed
    code ...     the kernel's cells, byte for byte

A notebook cannot read a later cell, and Kaggle runs it with no pip and no internet, so the package travels in the
first code cell, which runs before the kernel's first import. Its source is hidden where notebooks are read
(`jupyter.source_hidden` for JupyterLab, `_kg_hide-input` on Kaggle), so a reader meets the docstring and then
the kernel's own first cell, as a reader of the script meets its first lines. Carrying the package in the
notebook's metadata instead would need a first cell that finds the notebook's file, which a running notebook
cannot do reliably (papermill, Jupyter and Kaggle each put it elsewhere).

Built twice from the same files, the notebook is byte-identical (cell ids are numbered, not random).
"""

import ast

import jupytext
import nbformat

from src.errors import KitError

# Kaggle's runner (papermill) needs a kernelspec to start the notebook.
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
HIDDEN_CELL = {"jupyter": {"source_hidden": True}, "_kg_hide-input": True}


def _split_docstring(source: str) -> tuple[str | None, str]:
    """Returns the first cell's docstring and the code after it."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise KitError(f"kernel.py: line {error.lineno}: {error.msg}; fix the kernel before making a notebook.") \
            from None
    first = tree.body[0] if tree.body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return None, source
    rest = "".join(source.splitlines(keepends=True)[first.end_lineno:])
    return ast.get_docstring(tree), rest.strip("\n")


def _markdown(docstring: str) -> str:
    """The docstring as markdown: its first line a title, the rest as written (indented commands are code)."""
    title, _, body = docstring.partition("\n")
    return f"# {title.strip()}\n\n{body.strip()}".strip()


def notebook_text(kernel_source: str, unpacker: str, *, accelerator: str | None = None,
                  enable_gpu: bool = False) -> str:
    """Returns a kernel as a Kaggle notebook (`.ipynb` JSON): its docstring, the kit's package, its cells.

    Args:
        kernel_source: the kernel's `kernel.py`, its cells marked with `# %%` lines.
        unpacker: the code that unpacks the kit's package (`bundle.unpacker_code(..., notebook=True)`).
        accelerator: the machine shape asked for (the notebook's `kaggle` metadata), None for none.
        enable_gpu: whether the kernel asks for a GPU.

    Returns:
        The notebook, validated against nbformat's schema.

    Raises:
        KitError: the kernel does not parse.
    """
    cells = [cell for cell in jupytext.reads(kernel_source, fmt="py:percent").cells if cell.source.strip()]
    docstring, first = _split_docstring(cells[0].source if cells else "")
    story = ([first] if first.strip() else []) + [cell.source for cell in cells[1:]]
    notebook_cells = []
    if docstring:
        notebook_cells.append(nbformat.v4.new_markdown_cell(_markdown(docstring)))
    # The kernel's own docstring, for its `--help`: in a notebook `__doc__` is the notebook's, not the kernel's.
    notebook_cells.append(nbformat.v4.new_code_cell(f"{unpacker.rstrip()}\n__doc__ = {docstring!r}",
                                                    metadata=dict(HIDDEN_CELL)))
    notebook_cells += [nbformat.v4.new_code_cell(source) for source in story]
    for index, cell in enumerate(notebook_cells):
        cell["id"] = f"cell-{index}"
    notebook = nbformat.v4.new_notebook(cells=notebook_cells, metadata={
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        "kaggle": {"accelerator": accelerator or "none", "isGpuEnabled": enable_gpu, "isInternetEnabled": False,
                   "language": "python", "sourceType": "notebook"},
    })
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def code_cells(text: str) -> list[str]:
    """Returns the sources of a notebook's code cells, in order (what a runner executes)."""
    notebook = nbformat.reads(text, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]
