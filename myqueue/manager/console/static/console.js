// The console's only script: polls the console's JSON endpoint and fills in produce rates and the
// throughput charts (canvas). Served as a static file so that the Content-Security-Policy allows no
// inline script; it writes text only (textContent), never HTML.
"use strict";

(function () {
  const api = document.body.dataset.api;
  const rateCells = document.querySelectorAll("[data-rate-topic]");
  const charts = document.querySelectorAll("figure.chart");
  if (!api || (rateCells.length === 0 && charts.length === 0)) {
    return;
  }
  const everyMs = charts.length ? 1000 : 2000;

  function fmt(rate) {
    if (rate >= 100) return rate.toFixed(0) + " rec/s";
    return rate.toFixed(1) + " rec/s";
  }

  function fillRates(data) {
    for (const cell of rateCells) {
      const topic = cell.dataset.ratePartition === undefined ? cell.dataset.rateTopic : null;
      if (data.samples < 2) {
        cell.textContent = "sampling…";
        continue;
      }
      let rate;
      if (topic !== null) {
        const series = data.topics[topic] || [];
        rate = series.length ? series[series.length - 1][1] : 0;
      } else {
        const parts = data.partitions[cell.dataset.rateTopic] || {};
        rate = parts[cell.dataset.ratePartition] || 0;
      }
      cell.textContent = fmt(rate);
      cell.dataset.rate = String(rate);
    }
  }

  function totalSeries(topics) {
    const sums = new Map();
    for (const series of Object.values(topics)) {
      for (const [t, rate] of series) {
        sums.set(t, (sums.get(t) || 0) + rate);
      }
    }
    return Array.from(sums.entries()).sort((a, b) => a[0] - b[0]);
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  function draw(figure, series, now) {
    const canvas = figure.querySelector("canvas");
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, left = 70, bottom = 22, top = 10, right = 10;
    const span = 180;  // seconds shown
    ctx.clearRect(0, 0, w, h);
    const max = niceMax(Math.max(0, ...series.map((p) => p[1])));
    ctx.strokeStyle = "#d0d4dc";
    ctx.fillStyle = "#555";
    ctx.font = "12px sans-serif";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = top + (h - top - bottom) * (1 - i / 4);
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
      ctx.fillText(String(+(max * i / 4).toPrecision(3)), 4, y + 4);
    }
    for (let s = 0; s <= span; s += 30) {
      const x = left + (w - left - right) * (1 - s / span);
      ctx.fillText(s === 0 ? "now" : "-" + s + " s", x - 14, h - 6);
    }
    const x = (t) => left + (w - left - right) * (1 - Math.min(span, now - t) / span);
    const y = (v) => top + (h - top - bottom) * (1 - v / max);
    ctx.strokeStyle = "#2b6cb0";
    ctx.lineWidth = 2;
    ctx.beginPath();
    series.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
    const last = series.length ? series[series.length - 1][1] : 0;
    figure.querySelector(".latest").textContent = series.length ? "now: " + fmt(last) : "sampling…";
    figure.dataset.points = String(series.length);
    figure.dataset.last = String(last);
  }

  function drawCharts(data) {
    for (const figure of charts) {
      const topic = figure.dataset.chartTopic;
      const series = topic ? data.topics[topic] || [] : totalSeries(data.topics);
      draw(figure, series, data.now);
    }
  }

  async function poll() {
    try {
      const answer = await fetch(api, { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) {
        const data = await answer.json();
        fillRates(data);
        drawCharts(data);
        document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
      }
    } catch (e) {
      // the replica is restarting or the network blinked: try again at the next tick
    }
    setTimeout(poll, everyMs);
  }
  poll();
})();
