"""The `nodeweaver` command: thin over the stages, readable output, `--json` for machines.

Exit codes: 0 success / valid, 1 invalid workflow, 2 unreadable input or bad usage, 3 the run failed,
4 the run was interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nodeweaver import __version__, templates_cmd
from runtime.errors import NodeWeaverError
from runtime.settings import Settings, activate, current, load_settings

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_QUESTION = 0, 1, 2, 3, 4, 5
EXIT_PARTIAL = 6  # a valid plan that leaves part of the request out (listed under not_covered)
LOG_PATH: Path | None = None


def _print_json(data: Any) -> None:
    """Readable UTF-8 JSON; escaped ASCII when the data holds text UTF-8 cannot carry (lone surrogates)."""
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, ensure_ascii=True, indent=2, default=str)
    sys.stdout.write(text + "\n")


def _registry(args: argparse.Namespace):
    from nodes.registry import default_registry

    registry = default_registry()
    for catalog in getattr(args, "catalog", None) or []:
        try:
            registry.import_catalog_file(Path(catalog))
        except (OSError, ValueError) as exc:  # ValueError covers JSON that does not parse
            raise CatalogError(f"cannot import catalog {catalog}: {exc}") from None
    _remote_servers(args, registry)
    return registry


_RUNS_JOBS = frozenset({"plan", "run", "serve", "mcp"})  # commands that send jobs to ComfyUI servers


def _remote_servers(args: argparse.Namespace, registry) -> list:
    """The configured ComfyUI servers, connected once per command: their catalogs join the registry (marked
    remote); commands that run jobs get their backends too. A server that is down is a warning."""
    if hasattr(args, "comfyui_servers"):
        return args.comfyui_servers
    settings = current().comfyui
    servers: list = []
    if settings.urls:
        from engine.routing import connect_servers

        servers = connect_servers(settings, registry, backends=args.command in _RUNS_JOBS)
        for server in servers:
            if server.error is not None:
                print(f"warning: ComfyUI server {server.url} cannot be read ({server.error}); its nodes are "
                      "not available until it is refreshed", file=sys.stderr)
    args.comfyui_servers = servers
    return servers


class CatalogError(NodeWeaverError):
    """--catalog names a file that is not a readable /object_info document."""


def _common_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("folders and packs")
    group.add_argument("--models-dir", help="models folder (checkpoints/, loras/, vae/ ...); env NODEWEAVER_MODELS_DIR")
    group.add_argument("--comfyui-dir", help="an existing ComfyUI installation whose models/ are used too; "
                                             "env NODEWEAVER_COMFYUI_DIR")
    group.add_argument("--input-dir", help="input folder; env NODEWEAVER_INPUT_DIR")
    group.add_argument("--output-dir", help="output folder; env NODEWEAVER_OUTPUT_DIR")
    group.add_argument("--custom-nodes", action="append", metavar="PATH",
                       help="folder of ComfyUI custom node packs, or one pack (repeatable); env NODEWEAVER_CUSTOM_NODES")
    group.add_argument("--catalog", action="append", metavar="OBJECT_INFO_JSON",
                       help="import a ComfyUI /object_info catalog (nodes known and validatable, run elsewhere)")
    remote = parser.add_argument_group("remote ComfyUI servers")
    remote.add_argument("--comfyui-url", action="append", dest="comfyui_urls", metavar="URL",
                        help="a running ComfyUI (http://host:port) whose nodes and models join the catalog and "
                             "which runs the jobs that need them (repeatable); env NODEWEAVER_COMFYUI__URLS")
    remote.add_argument("--comfyui-header", action="append", dest="comfyui_headers", metavar="'NAME: VALUE'",
                        help="an HTTP header sent to the ComfyUI servers, e.g. a proxy's auth (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodeweaver", description="Words in, ComfyUI workflows out.")
    parser.add_argument("--version", action="version", version=f"nodeweaver {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _planning_parsers(sub)
    _server_parsers(sub)
    _catalog_parsers(sub)
    _workflow_parsers(sub)
    templates_cmd.add_parsers(sub, _common_flags)
    return parser


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a budget of 0 or less would stop a planner before it starts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _planning_parsers(sub) -> None:
    """plan, eval, eval-compare: words in."""
    p = sub.add_parser("plan", help="plan a workflow from a request in words (offline, or with an LLM provider)")
    p.add_argument("request", nargs="?", default="", help="what the workflow should do, in Chinese or English")
    p.add_argument("--resume", metavar="THREAD_ID", help="continue a checkpointed LLM plan from its last step")
    p.add_argument("-o", "--output", help="write the workflow (API JSON) here")
    p.add_argument("--run", action="store_true", help="run the workflow once it validates")
    p.add_argument("--provider", help="plan with this LLM provider (openai-compatible, dashscope or a profile); "
                                      "default: the offline planner, or NODEWEAVER_PLANNER_PROVIDER")
    p.add_argument("--model", help="the provider's model for planning")
    p.add_argument("--answer", action="append", default=[], metavar="SLOT=VALUE",
                   help="answer a clarifying question (e.g. image=photo.png, checkpoint='demo checkpoint')")
    p.add_argument("--from", dest="from_workflow", metavar="WORKFLOW",
                   help="change this workflow (API JSON, UI JSON, text form or PNG) as the request says, "
                        "instead of planning a new one; prints the changes")
    p.add_argument("--max-repairs", type=int, default=3)
    p.add_argument("--max-tool-calls", type=_positive_int, default=12,
                   help="most catalog lookups (search_nodes, get_node ...) an LLM planner may make")
    p.add_argument("--max-tokens", type=_positive_int, default=200_000, help="most tokens an LLM planner may spend")
    p.add_argument("--json", action="store_true", help="print the whole result (workflow, trace) as JSON")
    _common_flags(p)

    p = sub.add_parser("eval", help="run an eval suite of requests and report how well planning works")
    p.add_argument("suite", help="suite YAML (see ../shared/evals/README.md)")
    p.add_argument("--planner", choices=["offline", "llm"], default="offline")
    p.add_argument("--provider", help="LLM provider for --planner llm")
    p.add_argument("--model", help="the provider's model")
    p.add_argument("--run", action="store_true", help="also run every workflow that validates")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="plan every case K times (the spread is reported)")
    p.add_argument("--out", default="eval-results", help="folder for the JSON, HTML and text reports")
    p.add_argument("--record", metavar="CASSETTE", help="record the LLM's answers (planner and judge) to this file")
    p.add_argument("--replay", metavar="CASSETTE", help="replay recorded LLM answers (offline, exact)")
    p.add_argument("--judge", metavar="PROVIDER", help="with --run: ask this vision-capable provider whether each "
                                                       "case's output images satisfy its request (the 'resolved' "
                                                       "metric beside 'ran')")
    p.add_argument("--judge-model", help="the judge provider's vision model (default: gpt-4o-mini, qwen-vl-max)")
    p.add_argument("--min-pass-rate", type=float, help="exit 1 when the pass rate is below this (0..1)")
    _common_flags(p)

    p = sub.add_parser("eval-compare", help="compare two eval result files: what regressed, what improved")
    p.add_argument("before")
    p.add_argument("after")


def _server_parsers(sub) -> None:
    """mcp and serve: the network faces."""
    p = sub.add_parser("mcp", help="serve NodeWeaver's MCP tools over stdio (for Claude Desktop, Cursor ...)")
    _node_timeout_flag(p)
    _comfyui_launch_flags(p)  # folders, models, device and cache: the same flags as serve
    _common_flags(p)

    p = sub.add_parser("serve", help="HTTP API (ComfyUI-compatible + /api/plan) with MCP at /mcp/")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need --token)")
    p.add_argument("--listen", nargs="?", const="0.0.0.0", metavar="HOST",
                   help="ComfyUI's name for --host; bare --listen binds 0.0.0.0 (needs --token)")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--token", default=os.environ.get("NODEWEAVER_TOKEN"),
                   help="bearer token clients must send (env NODEWEAVER_TOKEN)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin allowed to call the API besides the server's own (repeatable)")
    p.add_argument("--history-scope", choices=["run", "all"],
                   help="what ComfyUI's /history lists: this server run's jobs (as ComfyUI; the default) or every "
                        "persisted job ([server] history_scope; /history?all=true asks for all either way)")
    ray = p.add_argument_group("Ray cluster (the ray extra)")
    ray.add_argument("--ray", metavar="ADDRESS|auto|local",
                     help="run jobs on Ray worker actors: a cluster's address (host:6379, ray://host:10001), auto "
                          "(the cluster this machine belongs to) or local (a cluster of this machine); config "
                          "[engine] backend = \"ray\", ray_address")
    ray.add_argument("--ray-workers", type=int, metavar="N",
                     help="Ray worker actors to start (default: one per GPU, else 1; [engine] ray_workers)")
    _node_timeout_flag(p)
    _comfyui_launch_flags(p)
    _common_flags(p)

    p = sub.add_parser("worker", help="join this machine to a NodeWeaver Ray cluster (runs `ray start "
                                      "--address ADDRESS --block`); the server's workers then run here too")
    p.add_argument("--address", required=True, help="the Ray head's address (host:6379), as `ray start` takes it")
    p.add_argument("--num-gpus", type=int, metavar="N", help="GPUs to offer (default: Ray detects them)")
    p.add_argument("--num-cpus", type=int, metavar="N", help="CPUs to offer (default: Ray detects them)")
    p.add_argument("--print-command", action="store_true", help="print the `ray start` command, run nothing")


def _comfyui_launch_flags(parser: argparse.ArgumentParser) -> None:
    """ComfyUI's `main.py` flags, so scripts that start ComfyUI can start NodeWeaver unchanged."""
    group = parser.add_argument_group("ComfyUI launch flags")
    group.add_argument("--output-directory", dest="output_dir", help="ComfyUI's name for --output-dir")
    group.add_argument("--input-directory", dest="input_dir", help="ComfyUI's name for --input-dir")
    group.add_argument("--temp-directory", dest="temp_dir", help="where previews go (default: DATA_DIR/temp)")
    group.add_argument("--extra-model-paths-config", action="append", default=[], metavar="YAML",
                       help="ComfyUI's extra_model_paths.yaml: its custom_nodes folders are loaded, a section's "
                            "base_path is searched as a ComfyUI installation (repeatable)")
    group.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    cache = group.add_mutually_exclusive_group()
    cache.add_argument("--cache-lru", type=int, metavar="N",
                       help="keep at most N cached node outputs (0: the classic cache)")
    cache.add_argument("--cache-none", action="store_true", help="cache no node outputs between prompts")
    cache.add_argument("--cache-classic", action="store_true",
                       help="cache node outputs within the memory budget (no entry limit)")
    group.add_argument("--disable-all-custom-nodes", action="store_true",
                       help="load no custom node packs (flags, environment and config file alike)")


def _catalog_parsers(sub) -> None:
    """nodes and node: the catalog."""
    p = sub.add_parser("nodes", help="search the node catalog, or export it as /object_info JSON")
    p.add_argument("words", nargs="*", help="search words (English or Chinese); none lists every node")
    p.add_argument("--produces", metavar="TYPE", help="only nodes with an output of this socket type")
    p.add_argument("--consumes", metavar="TYPE", help="only nodes with an input of this socket type")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--object-info", action="store_true", help="print the catalog as ComfyUI /object_info JSON")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _common_flags(p)

    p = sub.add_parser("node", help="one node's full schema")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print its /object_info entry")
    _common_flags(p)


def _workflow_parsers(sub) -> None:
    """validate, run, history, convert, demo-checkpoint: workflows in files."""
    p = sub.add_parser("validate", help="validate a workflow (API JSON, UI JSON, text form or PNG)")
    p.add_argument("file", help="workflow file, or - for standard input")
    p.add_argument("--json", action="store_true", help="structured errors as JSON")
    _common_flags(p)

    p = sub.add_parser("run", help="validate and run a workflow, showing progress and listing its outputs")
    p.add_argument("file", help="workflow file (API JSON, UI JSON, text form or PNG), or - for standard input")
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input before running (NODE is a node id or title; VALUE is JSON or text)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-cache", action="store_true", help="run every node, ignoring cached outputs")
    p.add_argument("--timeout", "--node-timeout", type=float, metavar="SECONDS", dest="node_timeout",
                   help="per-node time limit")
    _common_flags(p)

    p = sub.add_parser("history", help="recent runs from the job history")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    _common_flags(p)

    p = sub.add_parser("demo-checkpoint", help="write the tiny random-weight demo checkpoint into the models "
                                               "folder (it runs every image workflow offline; its pictures are noise)")
    _common_flags(p)

    p = sub.add_parser("convert", help="convert a workflow to API JSON, the text form, or a laid-out UI workflow "
                                        "that opens in ComfyUI")
    p.add_argument("file", help="workflow file, or - for standard input")
    p.add_argument("--to", choices=["api", "text", "ui"], required=True)
    p.add_argument("-o", "--output", help="write here instead of standard output")
    _common_flags(p)


def _node_timeout_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-timeout", type=float, metavar="SECONDS",
                        help="server-wide limit on how long one node may run (env NODEWEAVER_ENGINE__NODE_TIMEOUT); "
                             "a node past it fails its job and never holds what the next job needs")


def _activate_settings(args: argparse.Namespace) -> Settings:
    """Build the one settings object from the flags (over environment, config file and defaults), install it."""
    overrides: dict[str, Any] = {key: getattr(args, key, None) for key in
                                 ("comfyui_dir", "models_dir", "input_dir", "output_dir", "temp_dir",
                                  "custom_nodes")}
    engine = _engine_overrides(args)
    if engine:
        overrides["engine"] = engine
    comfyui = {key: value for key, value in (("urls", getattr(args, "comfyui_urls", None)),
                                             ("headers", getattr(args, "comfyui_headers", None))) if value}
    if comfyui:
        overrides["comfyui"] = comfyui
    for config in getattr(args, "extra_model_paths_config", None) or []:
        _apply_extra_model_paths(Path(config), overrides)
    settings = load_settings(overrides)
    if getattr(args, "disable_all_custom_nodes", False):
        settings = settings.model_copy(update={"custom_nodes": []})
    activate(settings)
    return settings


def _engine_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """[engine] settings from --node-timeout and ComfyUI's --cpu and cache flags."""
    engine: dict[str, Any] = {}
    if getattr(args, "node_timeout", None) is not None:
        engine["node_timeout"] = args.node_timeout
    if getattr(args, "cpu", False):
        engine["device"] = "cpu"
    if getattr(args, "cache_none", False):
        engine["cache"] = "none"
    elif getattr(args, "cache_classic", False):
        engine["cache"] = "classic"
    elif getattr(args, "cache_lru", None) is not None and args.cache_lru > 0:
        engine.update(cache="lru", cache_lru_size=args.cache_lru)
    elif getattr(args, "cache_lru", None) is not None:  # as in ComfyUI, 0 (its default) is the classic cache
        engine["cache"] = "classic"
    if getattr(args, "ray", None):
        engine.update(backend="ray", ray_address=args.ray)
    if getattr(args, "ray_workers", None) is not None:
        engine["ray_workers"] = args.ray_workers
    return engine


class ExtraModelPathsError(NodeWeaverError):
    """--extra-model-paths-config names a file that is not ComfyUI's extra_model_paths YAML."""

    kind = "config_error"


def _apply_extra_model_paths(path: Path, overrides: dict[str, Any]) -> None:
    """Map one ComfyUI extra_model_paths.yaml onto the folder overrides, as ComfyUI's load_extra_path_config
    does: every key of a section names a folder kind (legacy `clip`/`unet` mean text_encoders/diffusion_models),
    its value one path a line, relative to the section's base_path (else to the file's folder); `is_default`
    sections' folders are searched before ours. custom_nodes folders are added to the packs; a base_path also
    becomes the ComfyUI installation searched for models (the first one, unless --comfyui-dir was given)."""
    import yaml

    from runtime.folders import canonical_kind

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ExtraModelPathsError(f"cannot read --extra-model-paths-config {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise ExtraModelPathsError(f"{path}: expected sections of folder names (ComfyUI's extra_model_paths)")
    here = path.resolve().parent
    packs = list(overrides.get("custom_nodes") or [])
    for name, section in data.items():
        section = dict(section or {})
        base_text = section.pop("base_path", None)
        base = here / os.path.expandvars(os.path.expanduser(str(base_text).strip())) if base_text else None
        if base is not None and not overrides.get("comfyui_dir"):
            overrides["comfyui_dir"] = str(base)
        target = "default_model_paths" if section.pop("is_default", False) else "extra_model_paths"
        for kind, value in section.items():
            if not isinstance(value, str):
                raise ExtraModelPathsError(f"{path}: [{name}] {kind} must be a path, or paths one a line")
            folders = [str((base or here) / line.strip()) for line in value.splitlines() if line.strip()]
            if kind == "custom_nodes":
                packs += folders
            else:
                kinds = overrides.setdefault(target, {})
                kinds[canonical_kind(str(kind))] = [*kinds.get(canonical_kind(str(kind)), []), *folders]
    overrides["custom_nodes"] = packs


def _read_source(file: str) -> Path | str:
    if file == "-":
        return sys.stdin.read()
    return Path(file)


def _format_errors(errors: list) -> list[dict]:
    return [e.model_dump() for e in errors]


def cmd_nodes(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.object_info:
        _print_json(registry.object_info())
        return EXIT_OK
    query = " ".join(args.words)
    hits = registry.search(query, produces=args.produces, consumes=args.consumes, limit=args.limit)
    if args.json:
        _print_json({"query": query, "results": [h.model_dump() for h in hits],
                     "load_errors": [e.model_dump() for e in registry.load_errors]})
        return EXIT_OK
    for err in registry.load_errors:
        print(f"warning: node pack {err.pack!r} failed to load: {err.error}", file=sys.stderr)
    if not hits:
        print(f"no node matches {query!r}" if query else "no nodes")
        return EXIT_OK
    width = max(len(h.name) for h in hits)
    for hit in hits:
        outputs = ", ".join(hit.outputs) or "-"
        where = f"  (remote: {registry.pack_of(hit.name)[len('comfyui:'):]})" if registry.is_remote(hit.name) else ""
        print(f"{hit.name:<{width}}  [{hit.category}]  -> {outputs}{where}")
        if hit.description:
            print(f"{'':<{width}}  {hit.description[:100]}")
    return EXIT_OK


def cmd_node(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.name not in registry:
        close = registry.suggest(args.name)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        payload = {"error": {"type": "missing_node_type", "message": f"unknown node {args.name!r}{hint}",
                             "suggestions": close}}
        if args.json:
            _print_json(payload)
        else:
            print(payload["error"]["message"], file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        _print_json(registry.node_info(args.name))
    else:
        print(registry.describe(args.name))
        if registry.is_remote(args.name):
            print(f"runs on the ComfyUI server {registry.pack_of(args.name)[len('comfyui:'):]}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from compiler import WorkflowFormatError, load_workflow, validate

    registry = _registry(args)
    try:
        loaded = load_workflow(_read_source(args.file), registry)
    except WorkflowFormatError as exc:
        if args.json:
            _print_json({"valid": False, "readable": False, "errors": _format_errors(exc.errors), "warnings": []})
        else:
            print(f"cannot read workflow {args.file}:", file=sys.stderr)
            for err in exc.errors:
                print(f"  {err}", file=sys.stderr)
        return EXIT_UNREADABLE
    result = validate(loaded.prompt, registry)
    warnings = loaded.warnings + result.warnings
    if args.json:
        _print_json({
            "valid": result.valid, "readable": True, "format": loaded.format,
            "errors": _format_errors(result.errors), "warnings": _format_errors(warnings),
            "outputs": result.outputs, "good_outputs": result.good_outputs,
            "node_errors": result.node_errors(),
            "plan": result.plan.model_dump() if result.plan else None,
        })
    else:
        name = args.file if args.file != "-" else "<stdin>"
        if result.valid:
            print(f"OK {name} ({loaded.format} format): {result.summary()}")
        else:
            print(f"INVALID {name} ({loaded.format} format): {len(result.errors)} error(s)")
            for err in result.errors:
                print(f"  error: {err}")
        shown = [w for w in warnings if w.type not in ("unreachable_node", "input_default_used")]
        for warning in shown[:50]:
            print(f"  warning: {warning}")
        if len(shown) > 50:
            print(f"  ... and {len(shown) - 50} more warnings (use --json)")
    return EXIT_OK if result.valid else EXIT_INVALID


def cmd_convert(args: argparse.Namespace) -> int:
    from compiler import WorkflowFormatError, format_text, load_workflow
    from compiler.ui_export import to_ui_workflow

    registry = _registry(args)
    try:
        loaded = load_workflow(_read_source(args.file), registry)
        if args.to == "text":
            text = format_text(loaded.prompt, registry)
        else:
            document = loaded.prompt if args.to == "api" else to_ui_workflow(loaded.prompt, registry)
            text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    except WorkflowFormatError as exc:
        print(f"cannot convert {args.file}:", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return EXIT_UNREADABLE
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _apply_sets(prompt: dict, sets: list[str], registry) -> dict:
    """Apply --set NODE.INPUT=VALUE overrides; NODE may be an id or a node title.

    VALUE is read as JSON (numbers, true/false, lists) except for STRING inputs, which take it as text.
    """
    from compiler import WorkflowError, WorkflowFormatError

    prompt = json.loads(json.dumps(prompt))
    for item in sets:
        target, sep, raw = item.partition("=")
        node_ref, dot, input_name = target.rpartition(".")
        if not sep or not dot or not node_ref or not input_name:
            raise WorkflowFormatError([WorkflowError(type="invalid_workflow_format",
                                                     message=f"--set {item!r}: expected NODE.INPUT=VALUE")])
        node_id = node_ref if node_ref in prompt else next(
            (nid for nid, node in prompt.items() if (node.get("_meta") or {}).get("title") == node_ref), None)
        if node_id is None:
            raise WorkflowFormatError([WorkflowError(type="invalid_workflow_format",
                                                     message=f"--set {item!r}: no node with id or title {node_ref!r}")])
        value: object = raw
        class_type = prompt[node_id].get("class_type")
        spec = registry.spec(class_type) if isinstance(class_type, str) and class_type in registry else None
        declared = spec.input(input_name) if spec else None
        if declared is None or declared.type != "STRING":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        prompt[node_id].setdefault("inputs", {})[input_name] = value
    return prompt


class _ProgressPrinter:
    """One line per node on stderr, with a bar for nodes that report progress."""

    def __init__(self, prompt: dict, total: int) -> None:
        self.prompt = prompt
        self.total = total
        self.count = 0
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()

    def __call__(self, event) -> None:
        with self.lock:
            self._show(event)

    def _show(self, event) -> None:
        data = event.data
        if event.type == "execution_cached" and data.get("nodes"):
            print(f"  cached: {len(data['nodes'])} node(s) reused", file=sys.stderr)
        elif event.type == "executing" and data.get("node") is not None:
            self.count += 1
            node = data["node"]
            print(f"  [{self.count}/{self.total}] {node} {self.prompt.get(node, {}).get('class_type', '')}",
                  file=sys.stderr)
        elif event.type == "progress":
            value, total = data.get("value", 0), data.get("max", 0) or 1
            filled = int(20 * value / total)
            line = f"      [{'#' * filled}{'.' * (20 - filled)}] {value}/{total}"
            print(line, end="\r" if self.tty and value < total else "\n", file=sys.stderr)


def _output_lines(outputs: dict, prompt: dict) -> list[str]:
    """The texts and files a run produced, one line each (files as full paths)."""
    from runtime import folders

    roots = {"output": folders.output_dir(), "temp": folders.temp_dir(), "input": folders.input_dir()}
    lines = []
    for node_id, ui in outputs.items():
        class_type = prompt.get(node_id, {}).get("class_type", "")
        for text in ui.get("text", []):
            shown = text if len(text) <= 500 else text[:500] + "..."
            lines.append(f"  {node_id} {class_type}: {shown}")
        for key in ("images", "files", "gifs", "audio"):
            for item in ui.get(key, []):
                if isinstance(item, dict) and "filename" in item:
                    root = roots.get(item.get("type", "output"), roots["output"])
                    lines.append(f"  {node_id} {class_type}: {root / item.get('subfolder', '') / item['filename']}")
    return lines


class _QueueRunner:
    """Runs workflows through the job queue, so every run shows progress and lands in `history`.

    It has the executor's `execute(plan)` shape, so the planner's run step uses it unchanged.
    """

    def __init__(self, registry, settings: Settings, *, use_cache: bool = True, show_progress: bool = True,
                 remotes: list | None = None) -> None:
        from engine.cache import OutputCache
        from engine.executor import Executor
        from engine.jobs import JobQueue
        from engine.routing import RoutingBackend

        self.executor = Executor(registry, node_timeout=settings.engine.node_timeout,
                                 cache=OutputCache(enabled=use_cache, max_bytes=settings.engine.output_cache_bytes))
        # with ComfyUI servers each job goes where its nodes are (engine.routing)
        self.backend = RoutingBackend(self.executor, remotes, registry, prefer=settings.comfyui.prefer) \
            if remotes else self.executor
        self.queue = JobQueue(registry, settings.data_dir / "jobs.sqlite3", executor=self.backend,
                              node_timeout=settings.engine.node_timeout)
        self.show_progress = show_progress

    def submit(self, prompt: dict, outputs: list[str] | None = None):
        """Validate and queue; raises WorkflowInvalid."""
        return self.queue.submit(prompt, outputs=outputs)

    def wait(self, job):
        """Run the queued job here, printing progress; Ctrl-C interrupts it."""
        unsubscribe = None
        if self.show_progress:
            order = job.plan.get("order", [])
            unsubscribe = self.backend.bus.subscribe(_ProgressPrinter(job.prompt, len(order)))
            print(f"running job {job.id} ({len(order)} nodes)", file=sys.stderr)
        worker = threading.Thread(target=self.queue.run_next, daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(timeout=0.2)
        except KeyboardInterrupt:
            self.queue.interrupt()
            worker.join()
        finally:
            if unsubscribe is not None:
                unsubscribe()
        return self.queue.get(job.id)

    def execute(self, plan):
        return self.wait(self.submit(plan.prompt, outputs=list(plan.outputs)))

    def close(self) -> None:
        self.queue.close()
        self.backend.shutdown(wait=2.0)


def _print_unreadable(args: argparse.Namespace, exc, source: str | None = None) -> int:
    if args.json:
        _print_json({"status": "unreadable", "errors": _format_errors(exc.errors)})
    else:
        print(f"cannot read workflow {source or args.file}:", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
    return EXIT_UNREADABLE


def _print_run_result(done, as_json: bool) -> None:
    if as_json:
        _print_json(done.model_dump(exclude={"prompt", "plan"}))
    elif done.status == "success":
        print(f"done in {sum(done.timings.values()):.2f} s: {len(done.executed)} executed, "
              f"{len(done.cached)} cached")
        for line in _output_lines(done.outputs, done.prompt):
            print(line)
    elif done.status == "interrupted":
        print("interrupted", file=sys.stderr)
    else:
        err = done.error or {}
        print(f"FAILED at node {err.get('node_id')} ({err.get('node_type')}): {err.get('exception_type')}: "
              f"{err.get('exception_message')}", file=sys.stderr)
        if LOG_PATH:
            print(f"(details in {LOG_PATH})", file=sys.stderr)
        for line in _output_lines(done.outputs, done.prompt):
            print(line)


def cmd_run(args: argparse.Namespace) -> int:
    from compiler import WorkflowFormatError, load_workflow
    from engine.jobs import WorkflowInvalid

    registry = _registry(args)
    try:
        loaded = load_workflow(_read_source(args.file), registry)
        prompt = _apply_sets(loaded.prompt, args.set, registry)
    except WorkflowFormatError as exc:
        return _print_unreadable(args, exc)
    runner = _QueueRunner(registry, current(), use_cache=not args.no_cache, show_progress=not args.json,
                          remotes=_remote_servers(args, registry))
    try:
        try:
            job = runner.submit(prompt)
        except WorkflowInvalid as exc:
            if args.json:
                _print_json({"status": "invalid", "errors": _format_errors(exc.result.errors),
                             "node_errors": exc.result.node_errors()})
            else:
                print(f"INVALID workflow: {len(exc.result.errors)} error(s)", file=sys.stderr)
                for err in exc.result.errors:
                    print(f"  error: {err}", file=sys.stderr)
            return EXIT_INVALID
        done = runner.wait(job)
    finally:
        runner.close()
    _print_run_result(done, args.json)
    return {"success": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(done.status, EXIT_FAILED)


def _history_row(job) -> str:
    """A few lines a person can read: when, how it ended, what ran, what went wrong, what it made."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
    classes = [n.get("class_type", "?") for n in job.prompt.values() if isinstance(n, dict)]
    shape = " → ".join(dict.fromkeys(c for c in classes if c))
    shape = shape if len(shape) <= 110 else shape[:107] + "..."
    took = f"{job.finished_at - job.started_at:.2f} s" if job.finished_at and job.started_at else "-"
    lines = [f"{when}  {job.id}  {job.status:<11} {len(classes)} nodes ({len(job.executed)} run, "
             f"{len(job.cached)} cached)  {took}", f"    {shape}"]
    if job.error:
        lines.append(f"    error at node {job.error.get('node_id')}: {job.error.get('exception_type')}: "
                     f"{str(job.error.get('exception_message', ''))[:120]}")
    lines.extend(f"  {line}" for line in _output_lines(job.outputs, job.prompt)[:3])
    return "\n".join(lines)


def cmd_history(args: argparse.Namespace) -> int:
    from engine.jobs import JobQueue

    queue = JobQueue(_registry(args), current().data_dir / "jobs.sqlite3")
    jobs = queue.history(limit=args.limit) + queue.pending()
    queue.close()
    if args.json:
        _print_json([j.model_dump(exclude={"plan"}) for j in jobs])
        return EXIT_OK
    if not jobs:
        print("no runs yet (nodeweaver run FILE, or nodeweaver plan \"...\" --run)")
    for job in jobs:
        print(_history_row(job))
    return EXIT_OK


def cmd_demo_checkpoint(args: argparse.Namespace) -> int:
    from runtime.folders import models_dir

    try:
        import torch  # noqa: F401

        from nodes.diffusion.tiny import TINY_NAME, write_tiny_checkpoint
    except ImportError:
        print("the demo checkpoint needs the diffusion extra: pip install torch==2.13.0 && "
              "pip install 'nodeweaver[diffusion]'", file=sys.stderr)
        return EXIT_UNREADABLE
    target = models_dir()
    existing = target / "checkpoints" / f"{TINY_NAME}.safetensors"
    if existing.is_file():
        print(f"demo checkpoint already there: {existing}")
        return EXIT_OK
    written = write_tiny_checkpoint(target)
    for kind, path in written.items():
        print(f"wrote {kind.replace('_', ' ')}: {path}  (random weights: for trying workflows, not pictures)")
    return EXIT_OK


def _show_step(entry: dict) -> None:
    step = entry.get("step")
    if step == "understand":
        facts = ", ".join(f"{k}={v}" for k, v in entry.get("facts", {}).items() if k != "lang")
        print(f"  understand: {facts or '-'}", file=sys.stderr)
    elif step == "retrieve":
        print(f"  search nodes: {', '.join(entry.get('nodes', []))}", file=sys.stderr)
    elif step in ("draft", "repair"):
        what = entry.get("template") or entry.get("tool")
        extra = f" (patch: +{len(entry['patch']['added'])} -{len(entry['patch']['removed'])} lines)" \
            if entry.get("patch") else ""
        print(f"  {step}: {what}{extra}", file=sys.stderr)
    elif step == "validate":
        if entry.get("valid"):
            print("  validate: ok", file=sys.stderr)
        else:
            print(f"  validate: {len(entry.get('errors', []))} error(s)", file=sys.stderr)
            for err in entry.get("errors", [])[:5]:
                print(f"    - {err.get('type')}: {err.get('message')}", file=sys.stderr)
    elif step == "run":
        print(f"  run: {entry.get('status')} ({len(entry.get('executed', []))} nodes executed)", file=sys.stderr)
    elif step == "ask":
        print(f"  question: {entry['question']['text']}", file=sys.stderr)


def _plan_answers(args: argparse.Namespace) -> dict[str, str] | None:
    """--answer SLOT=VALUE pairs; None (after saying why) when one is malformed."""
    answers = {}
    for item in args.answer:
        slot, sep, value = item.partition("=")
        if not sep:
            print(f"--answer {item!r}: expected SLOT=VALUE", file=sys.stderr)
            return None
        answers[slot.strip()] = value.strip()
    return answers


def cmd_plan(args: argparse.Namespace) -> int:
    from agent import configured_provider  # not agent.llm: that imports LangChain, which offline never needs
    from agent.planner import DEMO_CHOICE, plan, resume
    from runtime.folders import model_files

    registry = _registry(args)
    answers = _plan_answers(args)
    if answers is None:
        return EXIT_UNREADABLE
    settings = current()
    provider = args.provider or configured_provider()
    if not model_files("checkpoints") and "checkpoint" not in answers:
        answers["checkpoint"] = DEMO_CHOICE  # so the whole path runs on a fresh machine
    on_step = None if args.json else _show_step
    checkpoints = settings.data_dir / "plans.sqlite3"
    if not args.resume and not args.request.strip():
        print("nodeweaver plan: say what the workflow should do, e.g. nodeweaver plan \"a red fox, 768x512\"",
              file=sys.stderr)
        return EXIT_UNREADABLE
    base = None
    if args.from_workflow:
        from compiler.errors import WorkflowFormatError
        from compiler.formats import load_workflow

        try:
            base = load_workflow(_read_source(args.from_workflow), registry).prompt
        except WorkflowFormatError as exc:
            return _print_unreadable(args, exc, args.from_workflow)
    runner = _QueueRunner(registry, settings, show_progress=not args.json,
                          remotes=_remote_servers(args, registry)) if args.run else None
    try:
        if args.resume:
            result = resume(args.resume, checkpoint_path=checkpoints, provider=provider or "openai-compatible",
                            model=args.model, registry=registry, on_step=on_step)
        else:
            if not args.json:
                print(f"planning with {'the offline planner' if provider is None else provider}: {args.request}",
                      file=sys.stderr)
            result = plan(args.request, provider=provider, model=args.model, registry=registry, run=args.run,
                          executor=runner, answers=answers, max_repairs=args.max_repairs, on_step=on_step,
                          checkpoint_path=checkpoints if provider else None,
                          max_request_chars=settings.server.max_plan_chars, workflow=base,
                          max_tool_calls=args.max_tool_calls, max_tokens=args.max_tokens)
    finally:
        if runner is not None:
            runner.close()
    if args.output and result.workflow and result.status in ("valid", "partial", "ran"):
        Path(args.output).write_text(json.dumps(result.workflow, ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")
    _print_plan_result(result, args)
    return _plan_exit_code(result)


def _plan_exit_code(result) -> int:
    """0 valid (or ran), 6 valid but partial, 5 a question, 3 the run failed, 1 no valid plan."""
    if result.status == "failed" and any(e.get("type") == "execution_error" for e in result.errors):
        return EXIT_FAILED
    if result.status in ("valid", "partial", "ran"):
        return EXIT_PARTIAL if result.partial else EXIT_OK
    return EXIT_QUESTION if result.status == "question" else EXIT_INVALID


def _print_plan_result(result, args: argparse.Namespace) -> None:
    if args.json:
        _print_json(result.model_dump())
    elif result.status == "question":
        print(f"QUESTION: {result.question['text']}")
        if result.question.get("choices"):
            print(f"  choices: {', '.join(result.question['choices'])}")
        print(f"  answer with: --answer {result.question.get('slot')}=VALUE")
    elif result.status in ("valid", "partial", "ran"):
        if any("tiny-sd15-random" in json.dumps(n) for n in (result.workflow or {}).values()):
            print("note: no checkpoint is installed, so this uses the demo checkpoint (random weights: "
                  "the path runs, the pictures are noise)", file=sys.stderr)
        print(result.text, end="")
        print(f"# {result.summary}")
        if args.output:
            print(f"# workflow written to {args.output}")
        for line in _output_lines(result.outputs, result.workflow or {}):
            print(line)
    else:
        print(f"FAILED: {result.summary}", file=sys.stderr)
        for err in result.errors[:10]:
            print(f"  - {err.get('type')}: {err.get('message')}", file=sys.stderr)
    if not args.json:
        _print_accounting(result)


def _print_accounting(result) -> None:
    """The changes made to a given workflow, what the plan leaves out and why, and notes: never left unsaid."""
    if result.diff:
        print("# changes:")
        for line in result.diff:
            print(f"#   {line}")
    for item in result.not_covered:
        suggestion = f" — {item['suggestion']}" if item.get("suggestion") else ""
        print(f"NOT COVERED: {item.get('what') or item.get('kind')}: {item.get('reason', '')}{suggestion}",
              file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    from evals.cassette import Cassette, RecordingChatModel, ReplayChatModel
    from evals.report import terminal_table, write_reports
    from evals.runner import run_suite
    from evals.suite import SuiteError, load_suite

    try:
        suite = load_suite(Path(args.suite))
    except SuiteError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_UNREADABLE
    registry = _registry(args)
    if args.replay and not Path(args.replay).is_file():
        print(f"no cassette at {args.replay}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.judge and not args.run:
        print("--judge needs --run: it judges the images the workflows produce", file=sys.stderr)
        return EXIT_UNREADABLE
    cassette = Cassette(Path(args.replay or args.record)) if args.replay or args.record else None
    chat_model, provider = None, None
    if args.planner == "llm":
        if args.replay:
            chat_model = ReplayChatModel(cassette=cassette)
        else:
            from agent.llm import make_chat_model
            from nodes.api.errors import ProviderError

            provider = args.provider or "openai-compatible"
            try:
                chat_model = make_chat_model(provider, args.model)
            except ProviderError as exc:
                print(str(exc), file=sys.stderr)
                return EXIT_UNREADABLE
            if args.record:
                chat_model = RecordingChatModel(inner=chat_model, cassette=cassette)
    judge_model = _eval_judge(args, cassette) if args.judge else None
    if args.judge and judge_model is None:
        return EXIT_UNREADABLE
    result = run_suite(suite, registry=registry, chat_model=chat_model, provider=None, run=args.run,
                       concurrency=max(1, args.concurrency), repeat=max(1, args.repeat), judge_model=judge_model)
    if args.planner == "llm":
        result.planner = "llm:replay" if args.replay else f"llm:{provider}"
    if args.record and cassette is not None:
        cassette.save()
    paths = write_reports(result, Path(args.out))
    print(terminal_table(result))
    print(f"reports: {paths['json']}  {paths['html']}  {paths['table']}")
    if args.min_pass_rate is not None and result.metrics.pass_rate < args.min_pass_rate:
        return EXIT_INVALID
    return EXIT_OK


def _eval_judge(args: argparse.Namespace, cassette):
    """The judge's chat model: replayed from the cassette, or the provider's (recorded when --record); None
    after saying why when the provider cannot be used."""
    from evals.cassette import RecordingChatModel, ReplayChatModel
    from evals.judge import make_judge_model
    from nodes.api.errors import ProviderError

    if args.replay:
        return ReplayChatModel(cassette=cassette)
    try:
        model = make_judge_model(args.judge, args.judge_model)
    except ProviderError as exc:
        print(f"--judge {args.judge}: {exc}", file=sys.stderr)
        return None
    return RecordingChatModel(inner=model, cassette=cassette) if args.record else model


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from evals.report import compare, load_json

    results = []
    for path in (args.before, args.after):
        try:
            results.append(load_json(Path(path)))
        except OSError as exc:
            print(f"cannot compare: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_UNREADABLE
        except (ValidationError, ValueError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            print(f"cannot compare: {path} is not a NodeWeaver eval result ({reason})", file=sys.stderr)
            return EXIT_UNREADABLE
    print(compare(*results))
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace) -> int:
    from mcp_server.mcp_app import build_mcp
    from mcp_server.service import NodeWeaverService

    registry = _registry(args)
    service = NodeWeaverService(registry, settings=current(), remotes=_remote_servers(args, registry))
    try:
        build_mcp(service).run("stdio")
    finally:
        service.close()
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mcp_server.http_app import create_app, is_loopback
    from mcp_server.service import NodeWeaverService

    host = args.listen or args.host
    loopback = is_loopback(host)
    if not loopback and not args.token:
        print(f"refusing to listen on {host} without a token: pass --token or set NODEWEAVER_TOKEN (anyone "
              "who can reach the port could run workflows); to serve only this machine use --listen "
              "127.0.0.1", file=sys.stderr)
        return EXIT_UNREADABLE
    settings = current()
    if args.history_scope:
        settings = settings.model_copy(update={"server": settings.server.model_copy(
            update={"history_scope": args.history_scope})})
        activate(settings)
    registry = _registry(args)
    service = NodeWeaverService(registry, settings=settings, remotes=_remote_servers(args, registry))
    app = create_app(service, token=args.token, loopback=loopback,
                     allowed_origins=[*settings.server.allowed_origins, *args.allow_origin])
    print(f"NodeWeaver on http://{host}:{args.port}  (API docs /docs, MCP /mcp/, websocket /ws)",
          file=sys.stderr)
    try:
        uvicorn.run(app, host=host, port=args.port, log_level="warning")
    finally:
        service.close()
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    """`ray start --address … --block` from this environment's Ray: the machine offers its GPUs/CPUs to the
    cluster, and the server's RayBackend places worker actors on it (NodeWeaver and the models must be
    installed here as on the server)."""
    import shlex
    import shutil
    import subprocess

    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_cli is None:
        print("nodeweaver worker: Ray is not installed here: pip install 'nodeweaver[ray]'", file=sys.stderr)
        return EXIT_UNREADABLE
    command = [ray_cli, "start", "--address", args.address, "--block"]
    for flag, value in (("--num-gpus", args.num_gpus), ("--num-cpus", args.num_cpus)):
        if value is not None:
            command += [flag, str(value)]
    if args.print_command:
        print(shlex.join(command))
        return EXIT_OK
    return subprocess.run(command, check=False).returncode


COMMANDS = {"mcp": cmd_mcp, "serve": cmd_serve, "worker": cmd_worker, "eval": cmd_eval, "eval-compare": cmd_eval_compare,
            "plan": cmd_plan, "demo-checkpoint": cmd_demo_checkpoint, "nodes": cmd_nodes, "node": cmd_node,
            "validate": cmd_validate, "convert": cmd_convert, "run": cmd_run, "history": cmd_history}
COMMANDS.update(templates_cmd.COMMANDS)


def _setup_logging() -> Path | None:
    """Logs (tracebacks included) go to a file in the data folder, not to the user's terminal."""
    import logging

    root = logging.getLogger()
    if os.environ.get("NODEWEAVER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
        return None
    try:
        log_dir = current().data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "nodeweaver.log"
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except (OSError, ValueError):
        path, handler = None, logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # text from workflows may hold what UTF-8 cannot carry
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_UNREADABLE
    try:
        _activate_settings(args)
    except NodeWeaverError as exc:
        print(f"nodeweaver: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    global LOG_PATH
    LOG_PATH = _setup_logging()
    try:
        return COMMANDS[args.command](args)
    except NodeWeaverError as exc:  # a clear, expected refusal (bad catalog, request too large ...)
        print(str(exc), file=sys.stderr)
        return EXIT_UNREADABLE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug of ours: say so plainly, keep the traceback for debugging only
        if os.environ.get("NODEWEAVER_DEBUG"):
            raise
        print(f"nodeweaver: internal error: {type(exc).__name__}: {exc} (set NODEWEAVER_DEBUG=1 for details)",
              file=sys.stderr)
        return EXIT_UNREADABLE


if __name__ == "__main__":
    sys.exit(main())
