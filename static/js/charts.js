// Plotly charts drawn from JSON the server embeds in data- attributes. htmx swaps in new
// fragments, so charts are (re)drawn after every settle as well as on first load.
(function () {
  function drawHistogram(el) {
    const h = JSON.parse(el.dataset.histogram);
    const maxLength = Number(el.dataset.maxLength);
    const centers = h.counts.map((_, i) => (h.edges[i] + h.edges[i + 1]) / 2);
    const widths = h.counts.map((_, i) => h.edges[i + 1] - h.edges[i]);
    const colors = centers.map((c) => (c > maxLength ? "#c62828" : "#4f46e5"));
    Plotly.newPlot(el, [{ type: "bar", x: centers, y: h.counts, width: widths,
      marker: { color: colors }, hovertemplate: "%{x:.0f}: %{y}<extra></extra>" }], {
      margin: { t: 10, r: 10, b: 45, l: 50 }, height: 260, bargap: 0.05,
      xaxis: { title: { text: el.dataset.xTitle } }, yaxis: { title: { text: el.dataset.yTitle } },
      shapes: [{ type: "line", x0: maxLength, x1: maxLength, yref: "paper", y0: 0, y1: 1,
        line: { color: "#c62828", dash: "dash" } }],
      annotations: [{ x: maxLength, yref: "paper", y: 1, text: el.dataset.limitLabel,
        showarrow: false, xanchor: "left", font: { color: "#c62828" } }],
    }, { displayModeBar: false, responsive: true });
    el.dataset.drawn = "1";
  }
  function drawAll() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll("[data-histogram]:not([data-drawn])").forEach(drawHistogram);
  }
  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
})();
