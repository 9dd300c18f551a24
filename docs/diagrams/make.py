"""Draw the examples for the docs: `python docs/diagrams/make.py` (needs Graphviz's `dot`).

    python docs/diagrams/make.py                    # rewrites docs/diagrams/* and docs/diagrams.md
    python docs/diagrams/make.py OUT --page OUT/diagrams.md --no-svg

For each example that defines a `graph` (examples/*.py: approval,
refund_approval, triage) it writes
`NAME.svg` (through the Graphviz binary) and `NAME.mmd` (Mermaid), and for a
few offline runs the same drawings with the run on them (status, visits, the
path taken): the approval run waiting at its gate, the same run done after one
revision, and a triage run through the billing handoff. Then it writes the page
that shows them all. Everything is deterministic, and
tests/test_docs_diagrams.py fails when the committed files are stale: run this
again after changing an example or the renderer, and commit what it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def examples() -> dict[str, ModuleType]:
    """Every examples/NAME.py that defines `graph`, by NAME, in name order."""
    modules = {p.stem: example(p.stem) for p in sorted((ROOT / "examples").glob("*.py"))}
    return {name: m for name, m in modules.items() if hasattr(m, "graph")}


def example(name: str) -> ModuleType:
    """Import examples/NAME.py by path, as `waypoint render examples/NAME.py:graph` does."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the state's annotations through it
    spec.loader.exec_module(module)
    return module


async def runs(modules: dict[str, ModuleType]) -> list[tuple[str, Any, Any, str]]:
    """(file stem, graph, marks, caption) for each run drawn, all offline and in memory."""
    from waypoint import MemoryStore, resume, start
    from waypoint.engine.marks import run_marks  # what `waypoint render --run` draws
    from waypoint.testing import ScriptedModel

    approval, triage = modules["approval"].graph, modules["triage"].graph
    store = MemoryStore()
    first = await (await start(approval, {"topic": "tides"}, store=store)).result()
    waiting = await run_marks(approval, first.run_id, store=store)
    await (await resume(approval, first.run_id, {"approved": False, "comment": "cite the archive"},
                        store=store)).result()
    await (await resume(approval, first.run_id, {"approved": True}, store=store)).result()
    done = await run_marks(approval, first.run_id, store=store)
    model = ScriptedModel(modules["triage"].SCRIPT)
    ticket = await (await start(triage, {"ticket": "I was charged twice in March"}, store=store,
                                deps={"model": model})).result()
    routed = await run_marks(triage, ticket.run_id, store=store)
    return [
        ("approval-waiting", approval, waiting, "The approval run, waiting at its gate `approve`."),
        ("approval-done", approval, done,
         "The same run after `waypoint resume`: rejected once (the loop guard `revise` sent it "
         "back to `draft`), then approved and published."),
        ("triage-run", triage, routed,
         "A triage run: the LLM router chose `billing`, the handoff transferred to `refunds`."),
    ]


def draw(stem: str, graph: Any, marks: Any, out: Path, svg: bool) -> None:
    options = {} if marks is None else {"status": marks.status, "visits": marks.visits, "path": marks.path}
    (out / f"{stem}.mmd").write_text(str(graph.render("mermaid", **options)), encoding="utf-8")
    if svg:
        (out / f"{stem}.svg").write_text(str(graph.render("svg", **options)), encoding="utf-8")


def page(modules: dict[str, ModuleType], drawn: list[tuple[str, Any, Any, str]], out: Path,
         page_path: Path) -> str:
    from waypoint.graphs.check import check_graph

    link = Path(os.path.relpath(out, page_path.parent))  # the images, seen from the page
    parts = [INTRO]
    for name, module in modules.items():
        report = check_graph(module.graph)
        bound = (f"at most {report.max_steps} node executions per run" if report.max_steps is not None
                 else f"no bound: {report.bound}")
        caption = f"`examples/{name}.py`: {_first_line(module)} `waypoint check` states {bound}."
        parts.append(_section(f"`{name}`", name, caption, link, out))
    parts.append("## With a run on it\n\n" + RUN_INTRO)
    for stem, _, _, caption in drawn:
        parts.append(_section(f"`{stem}`", stem, caption, link, out, level="###"))
    return "\n".join(parts)


def _section(title: str, stem: str, caption: str, link: Path, out: Path, level: str = "##") -> str:
    mermaid = (out / f"{stem}.mmd").read_text(encoding="utf-8").rstrip("\n")
    return (f"{level} {title}\n\n{caption}\n\n![{stem}]({(link / f'{stem}.svg').as_posix()})\n\n"
            f"<details><summary>Mermaid (<code>{stem}.mmd</code>)</summary>\n\n"
            f"```mermaid\n{mermaid}\n```\n\n</details>\n")


def _first_line(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0].rstrip(".") + "."


INTRO = """\
# Diagrams of the examples

Drawn by `graph.render(...)` / `waypoint render`, and generated by
[`docs/diagrams/make.py`](diagrams/make.py) (`python docs/diagrams/make.py`;
`tests/test_docs_diagrams.py` fails when these files are stale). Each SVG is
drawn by Graphviz; the Mermaid text below each is what GitHub renders inline.

Shapes: a function is a rounded box, a router a diamond, a gate a yellow
octagon naming the answer it waits for, a loop guard a marked diamond with its
cap, a join a dark bar, a map a stacked box, a subgraph a dashed cluster;
`start` is a circle and `end` a double circle. Router and guard edges carry
their labels.
"""

RUN_INTRO = """\
Given a run, each node is coloured by its status (green done, blue running,
orange waiting, red failed, grey not reached), shows how many times it ran
(`×2`), and the edges taken are drawn thick; a waiting gate has a heavy border
so it stands out. `waypoint render GRAPH --run RUN_ID -o run.svg` draws the
same from a run in the database.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=HERE, help="directory for the drawings")
    parser.add_argument("--page", type=Path, help="the Markdown page [default: OUT/../diagrams.md]")
    parser.add_argument("--no-svg", action="store_true", help="Mermaid only (no Graphviz binary)")
    args = parser.parse_args(argv)
    if not args.no_svg and shutil.which("dot") is None:  # before anything is written
        parser.error("the SVGs need Graphviz's `dot`, which is not on PATH: apt-get install graphviz "
                     "(macOS: brew install graphviz), or add --no-svg to write the Mermaid files and "
                     "the page only")
    out = args.out.resolve()
    page_path = (args.page or out.parent / "diagrams.md").resolve()
    out.mkdir(parents=True, exist_ok=True)
    modules = examples()
    for name, module in modules.items():
        draw(name, module.graph, None, out, not args.no_svg)
    drawn = asyncio.run(runs(modules))
    for stem, graph, marks, _ in drawn:
        draw(stem, graph, marks, out, not args.no_svg)
    page_path.write_text(page(modules, drawn, out, page_path), encoding="utf-8")
    print(f"wrote {len(modules) + len(drawn)} diagrams to {out} and {page_path}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the waypoint of this checkout, installed or not
    main()
