"""The documentation site's generated pages, from the code, so that they cannot drift.

python docs/gen_site.py            # write docs/reference/*.md and docs/generated/tutorial.ipynb
python docs/gen_site.py --no-notebook   # the reference pages only (seconds)

- reference/cli.md: every subcommand of `cnnvis`, with its flags and examples, from the parser;
- reference/methods.md: every registered method (formula, paper, cost, needs, parameters);
- reference/errors.md: the error types and exit codes, from `cnnvis.errors`;
- reference/api.md and its sub-pages: mkdocstrings directives for every public name;
- generated/tutorial.ipynb: examples/tutorial.ipynb executed (nbclient), with its outputs;
- generated/benchmarks.md: the benchmark definitions (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
REFERENCE = DOCS / "reference"
GENERATED = DOCS / "generated"

# Public modules documented on the API pages, and what each page is called.
API_PAGES = {
    "api": ("The library", "cnnvis"),
    "api-targets": ("Targets", "cnnvis.targets"),
    "api-evaluate": ("Evaluation", "cnnvis.evaluate"),
    "api-batch": ("Datasets (batch)", "cnnvis.batch"),
    "api-render": ("Figures and pictures", "cnnvis.render"),
    "api-detection": ("Detection", "cnnvis.detection"),
    "api-concepts": ("Concepts", "cnnvis.concepts"),
    "api-web": ("The web app", "cnnvis.web"),
}


def public_names(module_name: str) -> list[str]:
    """The names a module exports (`__all__`), or its public callables and classes."""
    import importlib

    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(v) or inspect.isfunction(v))
            and getattr(v, "__module__", "").startswith(module_name)
        ]
    return [n for n in names if not n.startswith("__")]


def api_page(title: str, module_name: str) -> str:
    names = public_names(module_name)
    lines = [f"# {title}: `{module_name}`", "", f"::: {module_name}", "    options:"]
    lines += ["        show_root_heading: false", "        members:"]
    lines += [f"          - {name}" for name in names]
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    from cnnvis.cli.main import build_parser

    parser = build_parser()
    lines = [
        "# Command line reference",
        "",
        "Generated from `cnnvis`'s argument parser. Every command prints the same with "
        "`cnnvis COMMAND --help`.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        lines += ["", f"## cnnvis {name}", "", "```text", command.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def methods_page() -> str:
    from cnnvis.methods import list_methods
    from cnnvis.methods.peers import peers_of

    lines = [
        "# Methods",
        "",
        "Generated from the method registry (`cnnvis.list_methods()`); `cnnvis methods` and "
        "the web page read the same.",
        "",
        "| method | kind | what it shows | cost |",
        "|---|---|---|---|",
    ]
    methods = list_methods()
    for m in methods:
        row = m.to_row()
        lines.append(
            f"| [`{m.name}`](#{anchor(m.name)}) | {row['kind']} | {row['summary']} "
            f"| {row['passes']} |"
        )
    for m in methods:
        row = m.to_row()
        params = _parameters(m.compute)
        lines += [
            "",
            f"## {m.name} {{#{anchor(m.name)}}}",
            "",
            row["summary"],
            "",
            f"- **formula**: {row['formula']}",
            f"- **paper**: {row['paper']}",
            f"- **cost**: {row['passes']}",
            f"- **needs**: {', '.join(row['needs']) or 'nothing beyond the model and image'}",
            f"- **parameters**: {params or 'none'}",
            f"- **in the peer libraries**: {'; '.join(peers_of(m.name)) or 'none recorded'}",
            "",
            "```python",
            f'cnnvis.explain(model, image, method="{m.name}")',
            "```",
        ]
    return "\n".join(lines) + "\n"


def anchor(name: str) -> str:
    """A method's anchor on the methods page: `grad-cam++` -> `grad-campp`."""
    return "".join(c if c.isalnum() or c == "-" else "p" if c == "+" else "-" for c in name)


def _parameters(compute: object) -> str:
    """`name=default` for each keyword parameter of a method's compute function."""
    try:
        signature = inspect.signature(compute)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    shown = []
    for p in list(signature.parameters.values())[2:]:  # (recording, layer, ...)
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = "" if p.default is p.empty else f"={p.default!r}"
        shown.append(f"`{p.name}{default}`")
    return ", ".join(shown)


def errors_page() -> str:
    import cnnvis.evaluate  # noqa: F401  (its EvaluationError)
    from cnnvis import errors

    classes, todo = [], [errors.CnnvisError]
    while todo:
        c = todo.pop()
        classes.append(c)
        todo += c.__subclasses__()
    classes = [c for c in classes if not c.__module__.startswith("cnnvis.cli")]
    classes.sort(key=lambda c: (c.exit_code, c.__name__))
    lines = [
        "# Errors and exit codes",
        "",
        "Every error cnnvis raises on purpose is a `CnnvisError`; its message says what was "
        "wrong and what to do. The command line prints it on one line and exits with the "
        "code below; the web API answers 422 with the class name in `error`. Exit code 2 is "
        "a usage error, 130 an interrupt.",
        "",
        "| error | exit code | built-in it refines | when |",
        "|---|---|---|---|",
    ]
    for c in classes:
        builtin = next(
            (
                b.__name__
                for b in c.__mro__[1:]
                if b.__module__ == "builtins" and b not in (Exception, BaseException, object)
            ),
            "Exception",
        )
        doc = " ".join((c.__doc__ or "").split())
        lines.append(f"| `{c.__name__}` | {c.exit_code} | {builtin} | {doc} |")
    return "\n".join(lines) + "\n"


def run_notebook() -> None:
    """examples/tutorial.ipynb executed into generated/tutorial.ipynb."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "examples" / "tutorial.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute(cwd=str(ROOT / "examples"))
    GENERATED.mkdir(exist_ok=True)
    nbformat.write(notebook, GENERATED / "tutorial.ipynb")


def write_pages() -> list[Path]:
    REFERENCE.mkdir(exist_ok=True)
    GENERATED.mkdir(exist_ok=True)
    definitions = (ROOT / "benchmarks" / "README.md").read_text()
    (GENERATED / "benchmarks.md").write_text(definitions.replace("](../", "](../../"))
    pages = {"cli": cli_page(), "methods": methods_page(), "errors": errors_page()}
    pages |= {name: api_page(*what) for name, what in API_PAGES.items()}
    written = []
    for name, text in pages.items():
        path = REFERENCE / f"{name}.md"
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    write_pages()
    if "--no-notebook" not in sys.argv:
        run_notebook()
