"""Report: ComfyUI's own workflow templates, converted and validated against a real ComfyUI catalog.

Run: python -m evals.templates_report [--catalog ../shared/fixtures/comfyui_object_info.json] [--json]
Needs the PyPI package comfyui-workflow-templates-json (a dev dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from compiler import validate
from compiler.errors import WorkflowError
from compiler.formats import load_workflow
from nodes.registry import NodeRegistry

FILE_INPUTS = ("image", "video", "audio", "model_file", "file", "mesh")

CATEGORIES = {
    "missing_node": "node class newer than the catalog (or from a custom pack)",
    "file_absent": "model or input file not installed here (choice lists come from empty folders)",
    "choice_drift": "choice value added to ComfyUI after the catalog",
    "node_changed": "node's inputs/outputs changed after the catalog",
    "widget_values": "frontend-only widget values that map onto no input",
    "other": "other",
}


def categorize(err: WorkflowError) -> str:
    if err.type == "missing_node_type":
        return "missing_node"
    if err.type == "value_not_in_list":
        name = err.input_name or ""
        if name.endswith("_name") or name in FILE_INPUTS or "files are installed" in err.message:
            return "file_absent"
        return "choice_drift"
    if err.type in ("output_index_out_of_range", "required_input_missing", "return_type_mismatch"):
        return "node_changed"
    if err.type in ("invalid_input_type", "value_smaller_than_min", "value_bigger_than_max"):
        return "widget_values"
    return "other"


def templates_folder() -> Path:
    import comfyui_workflow_templates_json as package

    return Path(os.path.dirname(package.__file__)) / "templates"


def run(catalog: Path) -> dict:
    registry = NodeRegistry()  # the catalog alone: measured against what ComfyUI itself declared
    registry.import_catalog_file(catalog)
    totals: Counter = Counter()
    per_category: Counter = Counter()
    only_files = 0
    start = time.perf_counter()
    for path in sorted(templates_folder().glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(data, dict) and isinstance(data.get("nodes"), list)):
            continue
        totals["templates"] += 1
        totals["with_subgraphs"] += bool((data.get("definitions") or {}).get("subgraphs"))
        loaded = load_workflow(path, registry)
        result = validate(loaded.prompt, registry)
        if result.valid:
            totals["valid"] += 1
            continue
        cats = {categorize(e) for e in result.errors}
        per_category.update(cats)
        if cats == {"file_absent"}:
            only_files += 1
    seconds = time.perf_counter() - start
    return {"templates": totals["templates"], "with_subgraphs": totals["with_subgraphs"],
            "valid": totals["valid"], "valid_once_files_installed": totals["valid"] + only_files,
            "invalid_by_category": dict(per_category), "seconds": round(seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "comfyui_object_info.json"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=default)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.catalog)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    n = report["templates"]
    print(f"{n} UI-format templates ({report['with_subgraphs']} with subgraphs) converted in {report['seconds']} s, "
          "no crash")
    print(f"validate clean against the catalog: {report['valid']} ({report['valid'] / n:.1%})")
    print(f"clean once their model/input files are installed: {report['valid_once_files_installed']} "
          f"({report['valid_once_files_installed'] / n:.1%})")
    print("templates with at least one error of each kind:")
    for key, count in sorted(report["invalid_by_category"].items(), key=lambda kv: -kv[1]):
        print(f"  {count:>4}  {CATEGORIES[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
