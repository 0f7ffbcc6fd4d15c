// The evaluation page: while it is queued or running, progress follows the evaluation's SSE
// stream and a final status reloads the page (the server renders the report); once it has
// succeeded, grouped bar charts are drawn from JSON the server put in data- attributes.
(function () {
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  function follow(root) {
    const d = root.dataset;
    const source = new EventSource(`/api/evaluations/${d.evaluationId}/events`);
    // Reload only when the database agrees the run is over, so a stale stream cannot loop.
    function reloadIfOver(again) {
      fetch(`/api/evaluations/${d.evaluationId}`, { headers: { Accept: "application/json" } })
        .then((r) => r.json())
        .then((e) => {
          if (TERMINAL.includes(e.status)) window.location.reload();
          else if (again) setTimeout(() => follow(root), 2000);
        });
    }
    source.addEventListener("progress", (e) => {
      const p = JSON.parse(e.data);
      const pct = p.total ? (100 * p.done) / p.total : 0;
      const bar = document.getElementById("evaluation-progress-bar");
      if (!bar) return;
      bar.style.width = `${pct}%`;
      const meter = document.getElementById("evaluation-progress");
      meter.setAttribute("aria-valuenow", p.done);
      meter.setAttribute("aria-valuemax", p.total);
      document.getElementById("evaluation-phase").textContent = d[`phase${p.phase[0].toUpperCase()}${p.phase.slice(1)}`] || p.phase;
      document.getElementById("evaluation-progress-text").textContent = `${p.done} / ${p.total}`;
    });
    source.addEventListener("status", (e) => {
      if (TERMINAL.includes(JSON.parse(e.data).status)) reloadIfOver(false);
    });
    // The server ends a stream that went quiet too: follow again while the run is not over.
    source.addEventListener("done", () => { source.close(); reloadIfOver(true); });
  }

  function drawBars(el) {
    const data = JSON.parse(el.dataset.bars);
    if (!data.categories.length) { el.hidden = true; return; }
    const traces = data.series.map((s) => ({
      type: "bar", name: s.name, x: data.categories, y: s.values,
      text: s.values.map((v) => (v === null ? "" : v.toFixed(2))), textposition: "auto",
      hovertemplate: `${s.name} · %{x}: %{y:.2f}<extra></extra>`,
    }));
    Plotly.newPlot(el, traces, {
      barmode: "group", height: 320, margin: { t: 30, r: 10, b: 50, l: 60 },
      legend: { orientation: "h", y: 1.15 },
      xaxis: { title: { text: el.dataset.xTitle } }, yaxis: { title: { text: el.dataset.yTitle }, rangemode: "tozero" },
    }, { displayModeBar: false, responsive: true });
    el.dataset.drawn = "1";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("evaluation-status");
    if (root && !TERMINAL.includes(root.dataset.status)) follow(root);
    if (typeof Plotly !== "undefined") document.querySelectorAll("[data-bars]:not([data-drawn])").forEach(drawBars);
  });
})();
