// sharedml console: draws the ROC and KS charts from each canvas's data-chart
// attribute (public figures the server rendered), after every htmx swap too.
// No inline script anywhere: the Content-Security-Policy allows this file only.
"use strict";
(function () {
  function dataset(label, xs, ys, color) {
    return {
      label: label,
      data: xs.map(function (x, i) { return { x: x, y: ys[i] }; }),
      borderColor: color, backgroundColor: color, pointRadius: 2, showLine: true, tension: 0
    };
  }
  function draw(canvas) {
    if (canvas.dataset.drawn || typeof Chart === "undefined") { return; }
    var d = JSON.parse(canvas.dataset.chart);
    var sets;
    if (canvas.dataset.kind === "roc") {
      sets = [dataset("ROC", d.fpr, d.tpr, "#1f6feb"),
              dataset("chance", [0, 1], [0, 1], "#999999")];
    } else {
      sets = [dataset("TPR", d.population, d.tpr, "#1f6feb"),
              dataset("FPR", d.population, d.fpr, "#d1242f")];
    }
    new Chart(canvas, {
      type: "scatter",
      data: { datasets: sets },
      options: {
        animation: false, responsive: false,
        scales: { x: { min: 0, max: 1 }, y: { min: 0, max: 1 } }
      }
    });
    canvas.dataset.drawn = "1";
  }
  function drawAll(root) {
    (root || document).querySelectorAll("canvas.chart").forEach(draw);
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function () { drawAll(document); });
})();
