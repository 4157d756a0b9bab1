"""Eval reports: a terminal table, JSON for machines, a self-contained HTML page with SVG charts, and a
comparison of two result files (what regressed, what improved)."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from evals.runner import SuiteResult


def terminal_table(result: SuiteResult) -> str:
    rows = [("case", "lang", "result", "repairs", "llm", "tokens", "latency", "failed checks")]
    for case in result.cases:
        failed = "; ".join(f"{c.check} ({c.detail})" if c.detail else c.check for c in case.failed_checks)
        rows.append((case.id + (f"#{case.repeat}" if case.repeat else ""), case.lang,
                     "pass" if case.passed else "FAIL", str(case.repairs), str(case.llm_calls), str(case.tokens),
                     f"{case.latency_s:.3f}s", failed[:90]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1])
        if index == 0:
            lines.append("-" * min(120, sum(widths) + 2 * len(widths) + 14))
    m = result.metrics
    lines.append("")
    lines.append(f"suite {result.suite} ({result.planner}): {m.cases} cases, pass {m.pass_rate:.0%}, "
                 f"valid {m.valid_rate:.0%}, mean repairs {m.mean_repairs}, LLM calls {m.llm_calls}, "
                 f"tokens {m.tokens}, latency p50 {m.latency_p50_s:.3f}s p95 {m.latency_p95_s:.3f}s"
                 + (f", ran {m.run_rate:.0%}" if m.run_rate is not None else "")
                 + (f", resolved {m.resolved_rate:.0%} of {m.judged} judged" if m.resolved_rate is not None else ""))
    for case in result.cases:
        if case.verdict is not None:
            verdict = case.verdict
            said = "resolved" if verdict.get("resolved") else ("NOT resolved" if verdict.get("resolved") is False
                                                              else "no verdict")
            lines.append(f"judge {case.id}{f'#{case.repeat}' if case.repeat else ''}: {said}: "
                         f"{verdict.get('reason') or verdict.get('error') or ''}"[:160])
    if len(m.pass_rate_by_repeat) > 1:
        lines.append(f"repeats: pass rates {m.pass_rate_by_repeat} (spread {m.pass_rate_spread}), "
                     f"{m.consistent_cases:.0%} of cases gave the same verdict every time")
    return "\n".join(lines)


def write_json(result: SuiteResult, path: Path) -> None:
    Path(path).write_text(result.model_dump_json(indent=2), encoding="utf-8")


def load_json(path: Path) -> SuiteResult:
    return SuiteResult.model_validate_json(Path(path).read_text(encoding="utf-8"))


# ---- HTML -------------------------------------------------------------------------------------------------
def _bar_chart(title: str, items: list[tuple[str, float]], *, percent: bool = True, width: int = 460) -> str:
    bar_h, gap, label_w = 22, 8, 130
    height = 40 + len(items) * (bar_h + gap)
    top = max([v for _, v in items] + [1e-9]) if not percent else 1.0
    parts = [f'<svg class="chart" role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="0" y="18" class="ct">{html.escape(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = 32 + i * (bar_h + gap)
        w = (width - label_w - 60) * (value / top if top else 0)
        color = "#2f9e44" if not percent or value >= 0.9 else ("#f08c00" if value >= 0.6 else "#e03131")
        shown = f"{value:.0%}" if percent else (f"{value:.3g}")
        parts.append(f'<text x="0" y="{y + 15}" class="cl">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" rx="3" fill="{color}"/>')
        parts.append(f'<text x="{label_w + max(w, 1) + 6:.1f}" y="{y + 15}" class="cv">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _histogram(title: str, values: list[float], bins: int = 8) -> list[tuple[str, float]]:
    if not values:
        return []
    low, high = min(values), max(values)
    step = (high - low) / bins or 1e-9
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / step))] += 1
    unit, scale = ("ms", 1000.0) if high < 1 else ("s", 1.0)
    return [(f"{(low + i * step) * scale:.3g}–{(low + (i + 1) * step) * scale:.3g} {unit}", float(c))
            for i, c in enumerate(counts)]


def html_report(result: SuiteResult) -> str:
    by_cat: dict[str, list[bool]] = defaultdict(list)
    by_lang: dict[str, list[bool]] = defaultdict(list)
    repairs: dict[str, int] = defaultdict(int)
    for case in result.cases:
        by_cat[case.category].append(case.passed)
        by_lang[case.lang].append(case.passed)
        repairs[str(case.repairs)] += 1
    cat_items = [(k, sum(v) / len(v)) for k, v in sorted(by_cat.items())]
    lang_items = [(k, sum(v) / len(v)) for k, v in sorted(by_lang.items())]
    latency_items = _histogram("latency", [c.latency_s for c in result.cases])
    repair_items = [(f"{k} repairs", float(v)) for k, v in sorted(repairs.items(), key=lambda kv: int(kv[0]))]
    m = result.metrics
    cards = [("pass rate", f"{m.pass_rate:.0%}"), ("valid", f"{m.valid_rate:.0%}"), ("cases", str(m.cases)),
             ("mean repairs", str(m.mean_repairs)), ("LLM calls", str(m.llm_calls)), ("tokens", str(m.tokens)),
             ("latency p50", f"{m.latency_p50_s:.3f}s"), ("latency p95", f"{m.latency_p95_s:.3f}s")]
    if m.run_rate is not None:
        cards.append(("ran", f"{m.run_rate:.0%}"))
    if m.resolved_rate is not None:
        cards.append((f"resolved ({m.judged} judged)", f"{m.resolved_rate:.0%}"))
    rows = []
    for case in result.cases:
        failed = "<br>".join(html.escape(f"{c.check}: {c.detail}") for c in case.failed_checks)
        if case.verdict is not None:
            said = {True: "resolved", False: "not resolved"}.get(case.verdict.get("resolved"), "no verdict")
            reason = case.verdict.get("reason") or case.verdict.get("error") or ""
            failed += ("<br>" if failed else "") + html.escape(f"judge: {said}: {reason}")
        rows.append(f'<tr class="{"ok" if case.passed else "bad"}"><td>{html.escape(case.id)}</td>'
                    f"<td>{case.lang}</td><td>{'pass' if case.passed else 'FAIL'}</td>"
                    f"<td class='p'>{html.escape(case.prompt)}</td><td>{case.repairs}</td><td>{case.llm_calls}</td>"
                    f"<td>{case.latency_s:.3f}s</td><td>{failed}</td></tr>")
    charts = [_bar_chart("Pass rate by category", cat_items), _bar_chart("Pass rate by language", lang_items),
              _bar_chart("Latency distribution (cases)", latency_items, percent=False),
              _bar_chart("Repairs needed (cases)", repair_items, percent=False)]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>NodeWeaver eval · {html.escape(result.suite)}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:32px;color:#212529;background:#f8f9fa}}
h1{{font-size:22px;margin:0 0 4px}} .sub{{color:#6c757d;margin-bottom:20px}}
.cards{{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:24px}}
.card{{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 3px #0002;min-width:110px}}
.card b{{display:block;font-size:22px}} .card span{{color:#6c757d;font-size:12px}}
.charts{{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:16px;margin-bottom:24px}}
.charts div{{background:#fff;border-radius:8px;padding:12px;box-shadow:0 1px 3px #0002}}
.ct{{font-size:14px;font-weight:600;fill:#212529}} .cl{{font-size:12px;fill:#495057}} .cv{{font-size:12px;fill:#212529}}
table{{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 3px #0002;font-size:13px}}
th,td{{padding:6px 8px;border-bottom:1px solid #dee2e6;text-align:left;vertical-align:top}}
tr.bad td{{background:#fff5f5}} td.p{{max-width:420px}}
</style></head><body>
<h1>NodeWeaver eval · {html.escape(result.suite)}</h1>
<div class="sub">planner {html.escape(result.planner)} · {len(result.cases)} runs · {result.seconds:.1f} s</div>
<div class="cards">{"".join(f'<div class="card"><b>{v}</b><span>{k}</span></div>' for k, v in cards)}</div>
<div class="charts">{"".join(f"<div>{c}</div>" for c in charts)}</div>
<table><thead><tr><th>case</th><th>lang</th><th>result</th><th>request</th><th>repairs</th><th>LLM calls</th>
<th>latency</th><th>failed checks</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
</body></html>"""


def compare(before: SuiteResult, after: SuiteResult) -> str:
    """What changed between two result files of the same suite."""
    a = {c.id: c for c in before.cases if c.repeat == 0}
    b = {c.id: c for c in after.cases if c.repeat == 0}
    regressed = sorted(i for i in a.keys() & b.keys() if a[i].passed and not b[i].passed)
    improved = sorted(i for i in a.keys() & b.keys() if not a[i].passed and b[i].passed)
    lines = [f"pass rate {before.metrics.pass_rate:.0%} → {after.metrics.pass_rate:.0%}, "
             f"valid {before.metrics.valid_rate:.0%} → {after.metrics.valid_rate:.0%}, "
             f"latency p50 {before.metrics.latency_p50_s:.3f}s → {after.metrics.latency_p50_s:.3f}s"]
    if before.metrics.resolved_rate is not None or after.metrics.resolved_rate is not None:
        shown = [f"{m.resolved_rate:.0%}" if m.resolved_rate is not None else "not judged"
                 for m in (before.metrics, after.metrics)]
        lines.append(f"resolved {shown[0]} → {shown[1]}")
    lines.append(f"regressed ({len(regressed)}): " + (", ".join(regressed) or "none"))
    for case_id in regressed:
        lines.append(f"  {case_id}: " + "; ".join(c.check for c in b[case_id].failed_checks))
    lines.append(f"improved ({len(improved)}): " + (", ".join(improved) or "none"))
    only = sorted(b.keys() - a.keys())
    if only:
        lines.append(f"new cases: {', '.join(only)}")
    return "\n".join(lines)


def write_reports(result: SuiteResult, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result.suite}-{result.planner.replace(':', '_')}"
    paths = {"json": out_dir / f"{stem}.json", "html": out_dir / f"{stem}.html", "table": out_dir / f"{stem}.txt"}
    write_json(result, paths["json"])
    paths["html"].write_text(html_report(result), encoding="utf-8")
    paths["table"].write_text(terminal_table(result) + "\n", encoding="utf-8")
    return paths


__all__ = ["compare", "html_report", "load_json", "terminal_table", "write_json", "write_reports"]
