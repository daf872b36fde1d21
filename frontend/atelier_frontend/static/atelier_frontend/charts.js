// Usage charts: inline SVG drawn from the page's usage-data (atelier_frontend/usage.py); no library.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const source = document.getElementById("usage-data");
  if (!source) return;
  const data = JSON.parse(source.textContent);
  const W = 520, H = 200, PAD = { l: 44, r: 12, t: 10, b: 26 };
  const COLOURS = ["#3b5bdb", "#e67700", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#5c940d"];
  const NS = "http://www.w3.org/2000/svg";
  const days = data.days;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  // Numbers as the page's language writes them: 12,345 (and a scale's 20K, or 2万 in Chinese).
  const lang = document.documentElement.lang || undefined;
  const formats = new Map();
  const number = (value, options = {}) => {
    const key = JSON.stringify(options);
    if (!formats.has(key)) formats.set(key, new Intl.NumberFormat(lang, options));
    return formats.get(key).format(value);
  };
  // step: the gap between the scale's ticks, whose labels need as many decimals as it has (a scale of
  // 0.02 s steps read "0.0 s" on every line); without it, a value in full (a dot's tooltip).
  const fmt = (value, format, step) => {
    if (value === null || value === undefined) return "–";
    if (format === "percent") return number(value, { style: "percent", maximumFractionDigits: 0 });
    // a scale's label fits beside the chart: 20K s, not 20,000 s
    const compact = step !== undefined && value >= 1000;
    if (format === "seconds") {
      if (compact) return `${number(value, { notation: "compact", maximumFractionDigits: 1 })} s`;
      const decimals = step === undefined ? (value >= 10 ? 0 : 1) : Math.max(0, Math.min(3, -Math.floor(Math.log10(step))));
      return `${number(value, { minimumFractionDigits: decimals, maximumFractionDigits: decimals })} s`;
    }
    if (compact) return number(value, { notation: "compact", maximumFractionDigits: 1 });
    return number(value, { maximumFractionDigits: 1 });
  };

  // A top of the scale whose four gridlines fall on round numbers (whole ones for counts).
  function nice(max, whole) {
    const raw = Math.max(max, 1e-9) / 4;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    let step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    if (whole) step = Math.max(1, Math.ceil(step));
    return step * 4;
  }

  function frame(max, format) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg" });
    const innerH = H - PAD.t - PAD.b;
    for (let i = 0; i <= 4; i += 1) {
      const y = PAD.t + innerH - (innerH * i) / 4;
      svg.appendChild(el("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "grid" }));
      svg.appendChild(el("text", { x: PAD.l - 6, y: y + 4, "text-anchor": "end", class: "tick" }, fmt((max * i) / 4, format, max / 4)));
    }
    const step = (W - PAD.l - PAD.r) / days.length;
    days.forEach((day, i) => {
      if ((days.length - 1 - i) % 2 === 0 || days.length <= 7) {
        svg.appendChild(el("text", { x: PAD.l + step * (i + 0.5), y: H - 8, "text-anchor": "middle", class: "tick" }, day.slice(5)));
      }
    });
    return { svg, step, y: (v) => PAD.t + innerH - (innerH * v) / (max || 1) };
  }

  function legend(section, names) {
    const list = document.createElement("p");
    list.className = "legend small";
    names.forEach((name, i) => {
      const item = document.createElement("span");
      item.innerHTML = `<i style="background:${COLOURS[i % COLOURS.length]}"></i>`;
      item.append(name);
      list.appendChild(item);
    });
    section.appendChild(list);
  }

  function bars(section, series) {
    const names = Object.keys(series).sort();
    const totals = days.map((_, i) => names.reduce((sum, n) => sum + series[n][i], 0));
    const max = nice(Math.max(1, ...totals), true);
    const { svg, step, y } = frame(max);
    days.forEach((day, i) => {
      let base = 0;
      names.forEach((name, k) => {
        const value = series[name][i];
        if (!value) return;
        const top = y(base + value), bottom = y(base);
        const bar = el("rect", { x: PAD.l + step * i + step * 0.15, width: step * 0.7, y: top, height: bottom - top, fill: COLOURS[k % COLOURS.length] });
        bar.appendChild(el("title", {}, `${day} ${name}: ${fmt(value)}`));
        svg.appendChild(bar);
        base += value;
      });
    });
    section.appendChild(svg);
    if (!names.length) section.insertAdjacentHTML("beforeend", '<p class="muted small">–</p>');
    legend(section, names);
  }

  function lines(section, keys, format) {
    const all = keys.flatMap((k) => data[k]).filter((v) => v !== null);
    // nothing measured yet (every value 0): a scale of one unit, not of nothing
    const max = format === "percent" ? 1 : nice(Math.max(0, ...all) || 1, format !== "seconds");
    const { svg, step, y } = frame(max, format);
    keys.forEach((key, k) => {
      const colour = COLOURS[k % COLOURS.length];
      let path = "";
      data[key].forEach((value, i) => {
        if (value === null) return;
        const x = PAD.l + step * (i + 0.5);
        path += `${path ? "L" : "M"}${x.toFixed(1)},${y(value).toFixed(1)}`;
        const dot = el("circle", { cx: x, cy: y(value), r: 3, fill: colour });
        dot.appendChild(el("title", {}, `${days[i]}: ${fmt(value, format)}`));
        svg.appendChild(dot);
      });
      if (path) svg.insertBefore(el("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2 }), svg.firstChild.nextSibling);
    });
    section.appendChild(svg);
    if (keys.length > 1) legend(section, keys.map((k) => k.replace("latency_", "")));
  }

  document.querySelectorAll("[data-chart]").forEach((section) => {
    const keys = section.dataset.series.split(",");
    if (section.dataset.chart === "bars") bars(section, data[keys[0]]);
    else lines(section, keys, section.dataset.format);
  });
});
