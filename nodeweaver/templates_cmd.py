"""`nodeweaver templates` and `nodeweaver template`: ComfyUI's official templates from the command line.

nodeweaver/cli.py wires these in with `add_parsers(sub, _common_flags)` and `COMMANDS.update(templates_cmd.COMMANDS)`;
`main(argv)` runs the same two commands on a parser of their own (tests, and until that wiring exists).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import BadRequest, NodeWeaverError

if TYPE_CHECKING:
    from agent.templates import TemplateInfo
    from nodes.registry import NodeRegistry

# the library (and the planner package it lives in) loads only when a template command runs: every other
# command starts without it

EXIT_OK, EXIT_UNREADABLE = 0, 2


def add_parsers(sub: Any, common_flags: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Add `templates` and `template` to a subparsers object; `common_flags` adds the CLI's shared flags
    (folders, --catalog); without it only --catalog is added."""
    p = sub.add_parser("templates", help="search ComfyUI's official workflow templates (English or Chinese)")
    p.add_argument("words", nargs="*", help="search words; none lists the most used templates")
    p.add_argument("--task", help="only templates doing this task (t2i, i2i, inpaint, outpaint, upscale, "
                                  "controlnet, edit, t2v, i2v, flf2v, v2v, audio, 3d, api …)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    (common_flags or _catalog_flag)(p)

    p = sub.add_parser("template", help="one official template's workflow and the model files it needs")
    p.add_argument("id", help="template id, as `nodeweaver templates` lists it")
    p.add_argument("--to", choices=("api", "text", "ui"), default="api", help="workflow form (default: api)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the workflow here instead of standard output")
    (common_flags or _catalog_flag)(p)


def _catalog_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", action="append", metavar="OBJECT_INFO_JSON",
                        help="import a ComfyUI /object_info catalog (names the widgets of more node classes)")


def _registry(args: argparse.Namespace) -> NodeRegistry:
    """The built-in registry, or a fresh one with the --catalog files imported (the shared one stays as is)."""
    from nodes.registry import NodeRegistry, default_registry

    catalogs = getattr(args, "catalog", None) or []
    if not catalogs:
        return default_registry()
    registry = NodeRegistry()
    registry.load_builtin_packs()
    for catalog in catalogs:
        try:
            registry.import_catalog_file(Path(catalog))
        except (OSError, ValueError) as exc:
            raise BadRequest(f"cannot import catalog {catalog}: {exc}", kind="bad_catalog") from None
    return registry


def _table(rows: list[TemplateInfo]) -> str:
    width = max([len(t.id) for t in rows] + [2])
    lines = [f"{'id':<{width}}  {'task':<10}  {'title':<44}  models"]
    for t in rows:
        models = ", ".join(m.name for m in t.models[:3]) + (f" (+{len(t.models) - 3})" if len(t.models) > 3 else "")
        title = t.title if len(t.title) <= 44 else t.title[:43] + "…"
        lines.append(f"{t.id:<{width}}  {t.task or '-':<10}  {title:<44}  {models or '-'}")
    return "\n".join(lines)


def cmd_templates(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise BadRequest("--limit must be at least 1")
    from agent.templates import load_library

    library = load_library(_registry(args))
    found = library.search(args.words, task=args.task, limit=args.limit)
    if args.json:
        sys.stdout.write(json.dumps([t.summary() for t in found], ensure_ascii=False, indent=2) + "\n")
    elif not found:
        print("no template matches", file=sys.stderr)
    else:
        print(_table(found))
    return EXIT_OK


def _needs(info: TemplateInfo) -> str:
    lines = [f"{info.id}: {info.title} (task {info.task or '-'}; {', '.join(info.tasks) or 'no task'})"]
    if info.models:
        lines.append("models it needs (folder, name, download):")
        lines += [f"  {m.directory or '?'}/{m.name}  {m.url or '(no URL in the template)'}" for m in info.models]
    if info.inputs:
        lines.append("input files it loads: " + ", ".join(f"{i.name} ({i.kind})" for i in info.inputs))
    return "\n".join(lines)


def cmd_template(args: argparse.Namespace) -> int:
    registry = _registry(args)
    from agent.templates import load_library

    library = load_library(registry)
    info = library.get(args.id)
    workflow = library.workflow(args.id, to=args.to, registry=registry)
    text = workflow if isinstance(workflow, str) else json.dumps(workflow, ensure_ascii=False, indent=2) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise BadRequest(f"cannot write {args.output}: {exc.strerror or exc}", kind="write_failed") from None
        print(_needs(info))
        print(f"wrote the {args.to} workflow to {args.output}")
    else:
        sys.stdout.write(text)
        print(_needs(info), file=sys.stderr)  # stdout stays the workflow alone, ready to pipe
    return EXIT_OK


COMMANDS = {"templates": cmd_templates, "template": cmd_template}


def main(argv: list[str] | None = None) -> int:
    """The two commands on a parser of their own; errors are one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="nodeweaver", description="ComfyUI's official workflow templates.")
    add_parsers(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except NodeWeaverError as exc:
        print(f"nodeweaver: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE


if __name__ == "__main__":
    sys.exit(main())
