"""``surefoot history --html``: one self-contained page of where the time goes.

The latest deployments as timelines of their phases (phases that ran side by side
overlap in time on their own rows; failed and interrupted runs marked; the phase a
resume starts at named), and each phase's duration across the last deployments.
The charts are drawn by Chart.js, vendored in ``surefoot/vendor`` and inlined into
the page, so that the page needs no network to be viewed.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from surefoot.base.names import OPTIONAL_PHASES, PHASE_NAMES
from surefoot.store import Deployment, PhaseRun, StateStore

DONE = ("completed", "skipped")
GAP = 60.0  # an idle stretch longer than this (a resume hours later) is drawn cut
GAP_SHOWN = 3.0  # ... this long


def _time(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def _status(run: PhaseRun, deployment: Deployment) -> str:
    if run.status == "running" and deployment.state != "running":
        return "interrupted"  # its process died
    return run.status


def resume_point(deployment: Deployment, runs: list[PhaseRun]) -> str | None:
    """The phase `deploy` resumes at, for a failed or interrupted deployment."""
    if deployment.state not in ("failed", "interrupted", "running"):
        return None
    latest = {run.phase: _status(run, deployment) for run in runs}
    order = PHASE_NAMES + tuple(name for name in OPTIONAL_PHASES if name in latest)
    return next((name for name in order if latest.get(name) not in DONE), None)


def deployment_timeline(deployment: Deployment, runs: list[PhaseRun], now: datetime) -> dict[str, Any]:
    """The runs of one deployment as bars (seconds from its first phase), idle stretches
    longer than GAP cut to GAP_SHOWN (each cut listed in ``breaks``)."""
    timed = []
    for run in runs:
        start = _time(run.started_at)
        if start is None:
            continue
        end = _time(run.finished_at) or (_time(deployment.finished_at) if deployment.state != "running" else now)
        timed.append((start, max(end or start, start), run))
    timed.sort(key=lambda item: item[0])
    bars: list[dict[str, Any]] = []
    breaks: list[dict[str, float]] = []
    if timed:
        origin = timed[0][0]
        shift = 0.0
        reach = 0.0  # where the work so far ended, in real seconds from origin
        for start, end, run in timed:
            begin = (start - origin).total_seconds()
            finish = (end - origin).total_seconds()
            if begin - reach > GAP:
                breaks.append({"at": round(reach - shift, 3), "seconds": round(begin - reach, 3)})
                shift += begin - reach - GAP_SHOWN
            reach = max(reach, finish)
            bars.append({
                "phase": run.phase,
                "attempt": run.attempt,
                "status": _status(run, deployment),
                "start": round(begin - shift, 3),
                "end": round(finish - shift, 3),
                "duration": round(finish - begin, 3),
                "error": run.error,
            })
    seen = {bar["phase"] for bar in bars}
    order = [name for name in PHASE_NAMES + OPTIONAL_PHASES if name in seen or name in PHASE_NAMES]
    resume = resume_point(deployment, runs)
    took = None
    began, ended = _time(deployment.started_at), _time(deployment.finished_at)
    if began is not None and ended is not None:
        took = round((ended - began).total_seconds(), 3)
    return {
        "id": deployment.id,
        "kind": deployment.kind,
        "state": deployment.state,
        "started_at": deployment.started_at,
        "duration": took,
        "user": deployment.user,
        "host": deployment.host,
        "error": deployment.error,
        "phases": order,
        "resume_at": resume,
        "bars": bars,
        "breaks": breaks,
    }


def collect_timeline(state_dir: Path, project: str, shown: int = 5, trend: int = 20) -> dict[str, Any]:
    """The latest ``shown`` deployments' timelines and the phase durations of the last
    ``trend`` deployments (oldest first)."""
    db = state_dir / "state.db"
    result: dict[str, Any] = {"project": project, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "gap_shown": GAP_SHOWN, "deployments": [],
                              "trend": {"labels": [], "outcomes": [], "phases": {}}}
    if not db.exists():
        return result
    now = datetime.now(UTC)
    with StateStore.open(db, create=False) as store:
        deployments = store.deployments(project)[:max(shown, trend)]
        runs = {d.id: store.phase_runs(d.id) for d in deployments}
        outcomes = {r.id: r.outcome for r in store.releases(project)}
    result["deployments"] = [deployment_timeline(d, runs[d.id], now) for d in deployments[:shown]]
    recent = list(reversed(deployments[:trend]))
    names = [n for n in PHASE_NAMES + OPTIONAL_PHASES if any(r.phase == n for d in recent for r in runs[d.id])]
    durations: dict[str, list[float | None]] = {name: [] for name in names}
    for deployment in recent:
        result["trend"]["labels"].append(f"#{deployment.id}")
        result["trend"]["outcomes"].append(outcomes.get(deployment.id) or deployment.state)
        took: dict[str, float] = {}
        for run in runs[deployment.id]:
            start, end = _time(run.started_at), _time(run.finished_at)
            if run.status == "completed" and start and end:
                took[run.phase] = round((end - start).total_seconds(), 3)
        for name in names:
            durations[name].append(took.get(name))
    result["trend"]["phases"] = durations
    return result


def _script_json(data: Any) -> str:
    return json.dumps(data).replace("</", "<\\/").replace("<!--", "<\\!--")


def _chart_js() -> str:
    return (resources.files("surefoot") / "vendor" / "chart.umd.min.js").read_text(encoding="utf-8")


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 4px; }
.meta { color: #59636e; margin: 0 0 8px; } .chart { position: relative; }
.resume { color: #9a6700; font-weight: 600; } .failed { color: #cf222e; font-weight: 600; }
table { border-collapse: collapse; margin-top: 8px; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #d1d9e0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""

PAGE_SCRIPT = """
(function () {
  const root = document.documentElement;
  window.addEventListener('error', function (e) { root.setAttribute('data-error', String(e.message)); });
  const data = JSON.parse(document.getElementById('surefoot-data').textContent);
  const colors = {completed: '#2da44e', skipped: '#afb8c1', failed: '#cf222e', interrupted: '#bf8700',
                  running: '#0969da'};
  const palette = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7',
                   '#9c755f', '#bab0ac', '#1f2328'];
  const seconds = function (v) { return v < 90 ? v.toFixed(1) + 's' : (v / 60).toFixed(1) + 'min'; };
  // A dashed line where an idle stretch (a resume long after a failure) was cut short.
  const cutLines = {
    id: 'surefootCuts',
    afterDatasetsDraw: function (chart, _args, options) {
      const cuts = (options && options.cuts) || [];
      const x = chart.scales.x, area = chart.chartArea, g = chart.ctx;
      g.save();
      g.strokeStyle = '#6e7781'; g.fillStyle = '#59636e'; g.setLineDash([4, 3]); g.font = '11px sans-serif';
      cuts.forEach(function (cut) {
        const px = x.getPixelForValue(cut.at + data.gap_shown / 2);
        g.beginPath(); g.moveTo(px, area.top); g.lineTo(px, area.bottom); g.stroke();
        g.fillText('idle ' + seconds(cut.seconds), px + 4, area.bottom - 4);
      });
      g.restore();
    }
  };
  let drawn = 0;
  data.deployments.forEach(function (dep) {
    const canvas = document.getElementById('timeline-' + dep.id);
    const label = function (name) { return name === dep.resume_at ? '\\u25B6 ' + name + ' (resume here)' : name; };
    const statuses = ['completed', 'skipped', 'failed', 'interrupted', 'running'];
    const datasets = statuses.map(function (status) {
      return {
        label: status, backgroundColor: colors[status], borderColor: '#1f2328', grouped: false,
        borderWidth: status === 'failed' || status === 'interrupted' ? 2 : 0, minBarLength: 3,
        data: dep.bars.filter(function (b) { return b.status === status; })
                      .map(function (b) { return {x: [b.start, b.end], y: label(b.phase), bar: b}; })
      };
    }).filter(function (set) { return set.data.length > 0; });
    new Chart(canvas, {
      type: 'bar',
      plugins: [cutLines],
      data: {labels: dep.phases.map(label), datasets: datasets},
      options: {
        indexAxis: 'y', animation: false, responsive: true, maintainAspectRatio: false,
        scales: {x: {type: 'linear', min: 0, title: {display: true, text: 'seconds from the first phase'}},
                 y: {ticks: {color: function (c) {
                   return dep.phases[c.index] === dep.resume_at ? '#9a6700' : '#1f2328'; }}}},
        plugins: {
          surefootCuts: {cuts: dep.breaks},
          legend: {position: 'bottom'},
          tooltip: {callbacks: {label: function (c) {
            const b = c.raw.bar;
            return b.phase + ' (attempt ' + b.attempt + '): ' + b.status + ', ' + seconds(b.duration) +
                   (b.error ? ' \\u2014 ' + b.error : '');
          }}}
        }
      }
    });
    drawn += 1;
  });
  const trend = document.getElementById('trend');
  if (trend && data.trend.labels.length) {
    const names = Object.keys(data.trend.phases);
    new Chart(trend, {
      type: 'line',
      data: {
        labels: data.trend.labels.map(function (l, i) { return l + ' ' + data.trend.outcomes[i]; }),
        datasets: names.map(function (name, i) {
          return {label: name, data: data.trend.phases[name], spanGaps: true, tension: 0,
                  borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length]};
        })
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        scales: {y: {min: 0, title: {display: true, text: 'seconds'}}},
        plugins: {legend: {position: 'bottom'}}
      }
    });
    drawn += 1;
  }
  root.setAttribute('data-charts', String(drawn));
})();
"""


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds < 90 else f"{seconds / 60:.1f}min"


def render_html(data: dict[str, Any]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>surefoot history: {esc(data['project'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>surefoot history: {esc(data['project'])}</h1>",
        f'<p class="meta">generated {esc(data["generated_at"])}; the latest {len(data["deployments"])} '
        "deployment(s), newest first</p>",
        "<noscript><p>The charts need JavaScript (it is inlined in this file); the tables below say the same."
        "</p></noscript>",
    ]
    if not data["deployments"]:
        parts.append("<p>No deployment yet.</p>")
    for dep in data["deployments"]:
        who = f"{dep['user']}@{dep['host']}"
        state_class = "failed" if dep["state"] in ("failed", "interrupted", "rolled-back") else ""
        parts.append(f'<h2 id="deployment-{dep["id"]}">deployment #{dep["id"]} ({esc(dep["kind"])}): '
                     f'<span class="{state_class}">{esc(dep["state"])}</span></h2>')
        meta = f"started {esc(dep['started_at'].replace('T', ' ')[:19])} UTC by {esc(who)}"
        if dep["duration"] is not None:
            meta += f", took {_fmt(dep['duration'])}"
        for cut in dep["breaks"]:
            meta += f"; idle {_fmt(cut['seconds'])} cut at {cut['at']:.0f}s"
        parts.append(f'<p class="meta">{meta}</p>')
        if dep["resume_at"]:
            parts.append(f'<p class="resume">`surefoot deploy` resumes at {esc(dep["resume_at"])}</p>')
        height = 60 + 26 * len(dep["phases"])
        parts.append(f'<div class="chart" style="height:{height}px"><canvas id="timeline-{dep["id"]}" '
                     f'aria-label="timeline of deployment #{dep["id"]}" role="img"></canvas></div>')
        if dep is data["deployments"][0]:
            parts.append(_phase_table(dep))
            parts.append(_trend(data["trend"]))  # between the latest and the older ones
    parts.append(f'<script type="application/json" id="surefoot-data">{_script_json(data)}</script>')
    parts.append(f"<script>{_chart_js()}</script>")
    parts.append(f"<script>{PAGE_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _trend(trend: dict[str, Any]) -> str:
    if not trend["labels"]:
        return ""
    return "\n".join([
        f"<h2>phase durations across the last {len(trend['labels'])} deployment(s)</h2>",
        '<p class="meta">seconds of each completed phase, oldest first: a slowing build or migration '
        "stands out</p>",
        '<div class="chart" style="height:300px"><canvas id="trend" role="img" '
        'aria-label="phase durations across deployments"></canvas></div>',
    ])


def _phase_table(dep: dict[str, Any]) -> str:
    esc = html.escape
    rows = ['<table class="phases"><tr><th>phase</th><th>status</th><th>attempts</th><th>from</th>'
            "<th>took</th></tr>"]
    for name in dep["phases"]:
        bars = [bar for bar in dep["bars"] if bar["phase"] == name]
        last = bars[-1] if bars else None
        status = last["status"] if last else "pending"
        mark = " (resume here)" if name == dep["resume_at"] else ""
        began = "" if last is None else f"{last['start']:.1f}s"
        took = "" if last is None else _fmt(last["duration"])
        rows.append(
            f'<tr data-phase="{esc(name)}"><td>{esc(name)}{mark}</td><td>{esc(status)}</td>'
            f'<td class="num">{len(bars) or ""}</td><td class="num">{began}</td><td class="num">{took}</td></tr>'
        )
    rows.append("</table>")
    return "\n".join(rows)
