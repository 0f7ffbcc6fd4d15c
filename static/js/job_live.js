// The job page's live view: loss and learning-rate charts fed first by the points the server
// embedded (the database copy), then by the job's SSE stream, which replays from the start and
// then follows. Points are keyed by step, so replayed and embedded points never double.
(function () {
  const root = document.getElementById("job-live");
  if (!root) return;
  const d = root.dataset;
  const jobId = d.jobId;
  const byStep = new Map();
  let totalSteps = Number(d.totalSteps) || 0;
  let smoothing = 0.6;
  const lossEl = document.getElementById("loss-chart");
  const lrEl = document.getElementById("lr-chart");

  // Exponential moving average with bias correction (as TensorBoard smooths), so the first
  // points are not pulled toward zero.
  function ema(values, beta) {
    let acc = 0;
    return values.map((v, i) => {
      acc = beta * acc + (1 - beta) * v;
      return acc / (1 - Math.pow(beta, i + 1));
    });
  }
  function series() {
    const pts = [...byStep.values()].sort((a, b) => a.step - b.step);
    const steps = pts.map((p) => p.step);
    const loss = pts.map((p) => p.loss);
    const evals = pts.filter((p) => p.eval_loss !== null && p.eval_loss !== undefined);
    return { pts, steps, loss, smooth: ema(loss, smoothing), evalSteps: evals.map((p) => p.step),
      evalLoss: evals.map((p) => p.eval_loss), lr: pts.map((p) => p.lr) };
  }
  const layout = (yTitle, height) => ({
    margin: { t: 10, r: 10, b: 40, l: 55 }, height, legend: { orientation: "h", y: 1.12 },
    xaxis: { title: { text: d.labelStep }, rangemode: "tozero" }, yaxis: { title: { text: yTitle } },
  });
  function draw() {
    if (typeof Plotly === "undefined") return;
    const s = series();
    Plotly.react(lossEl, [
      { x: s.steps, y: s.loss, name: d.labelTrain, mode: "lines", line: { color: "#c7d2fe", width: 1 } },
      { x: s.steps, y: s.smooth, name: d.labelSmoothed, mode: "lines", line: { color: "#4f46e5", width: 2 } },
      { x: s.evalSteps, y: s.evalLoss, name: d.labelEval, mode: "lines+markers", line: { color: "#dc2626", width: 2 } },
    ], layout(d.labelLoss, 320), { displayModeBar: false, responsive: true });
    Plotly.react(lrEl, [{ x: s.steps, y: s.lr, name: d.labelLr, mode: "lines", line: { color: "#059669" } }],
      layout(d.labelLr, 180), { displayModeBar: false, responsive: true });
    document.getElementById("points-count").textContent = s.pts.length ? `${s.pts.length} / ${totalSteps}` : "";
    lossEl.dataset.points = String(s.pts.length);
  }
  function progress(p) {
    totalSteps = p.total_steps || totalSteps;
    const pct = totalSteps ? (100 * p.step) / totalSteps : 0;
    document.getElementById("progress-bar").style.width = `${pct}%`;
    document.getElementById("progress-text").textContent = `${p.step} / ${totalSteps}`;
    if (p.tokens_per_s) document.getElementById("speed-text").textContent = `${Math.round(p.tokens_per_s)} tok/s`;
    if (p.eta_s !== null && p.eta_s !== undefined) {
      const m = Math.floor(p.eta_s / 60), sec = Math.round(p.eta_s % 60);
      document.getElementById("eta-text").textContent = `ETA ${m}:${String(sec).padStart(2, "0")}`;
    }
  }
  let pending = false;
  function add(p) {
    byStep.set(p.step, p);
    progress(p);
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); }
  }
  JSON.parse(d.points || "[]").forEach((p) => byStep.set(p.step, p));
  document.addEventListener("DOMContentLoaded", () => {
    draw();
    const last = [...byStep.values()].pop();
    if (last) progress(last);
  });
  const slider = document.getElementById("smoothing");
  slider.addEventListener("input", () => {
    smoothing = Number(slider.value);
    document.getElementById("smoothing-value").textContent = slider.value;
    draw();
  });
  const log = document.getElementById("job-log");
  const source = new EventSource(`/api/jobs/${jobId}/events`);
  source.addEventListener("metric", (e) => add(JSON.parse(e.data)));
  source.addEventListener("start", (e) => { totalSteps = JSON.parse(e.data).total_steps; });
  source.addEventListener("log", (e) => {
    const line = JSON.parse(e.data).line;
    if (!log.textContent.includes(line)) { log.textContent += line + "\n"; log.scrollTop = log.scrollHeight; }
  });
  source.addEventListener("status", () => {
    if (window.htmx) htmx.ajax("GET", `/jobs/${jobId}/status`, { target: "#job-status", swap: "outerHTML" });
  });
  source.addEventListener("done", () => source.close());
})();
