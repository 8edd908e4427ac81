// The live page: server-sent events from /api/stream, the chart and tables from /api/rounds and
// /api/nodes. It reads nothing but the explorer's JSON API, builds every element with
// textContent (node ids and reasons come from the network: never parsed as HTML), and runs
// under a CSP that allows no inline script.
"use strict";
(function () {
  const body = document.body;
  if (body.dataset.page !== "index") return;
  const chartHours = Number(body.dataset.chartHours || "3");
  const recentRounds = Number(body.dataset.recentRounds || "30");
  const byId = (id) => document.getElementById(id);
  let lastPrice = null;
  let lastPriceAt = 0;
  let chart = null;

  // Half up to the cent with integer arithmetic on the exact string (the server does the same).
  function cents(exact) {
    if (exact === null || exact === undefined || exact === "") return "\u2014";
    const [whole, fraction = ""] = exact.split(".");
    const e8 = BigInt(whole) * 100000000n + BigInt((fraction + "00000000").slice(0, 8));
    const total = (e8 + 500000n) / 1000000n;
    return (total / 100n).toLocaleString("en-US") + "." + String(total % 100n).padStart(2, "0");
  }
  function percent(ratio) {
    if (ratio === null || ratio === undefined) return "\u2014";
    const value = Number(ratio) * 100;
    return (value >= 0 ? "+" : "") + value.toFixed(4) + " %";
  }
  function text(id, value) {
    const element = byId(id);
    if (element) element.textContent = value;
  }
  function cell(row, value, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (value instanceof Node) td.appendChild(value); else td.textContent = value;
    row.appendChild(td);
    return td;
  }
  function code(value) {
    const element = document.createElement("code");
    element.textContent = value;
    return element;
  }
  function span(value, className) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = value;
    return element;
  }
  function emptyRow(tbody, columns, message) {
    const row = document.createElement("tr");
    const td = cell(row, message, "empty");
    td.colSpan = columns;
    tbody.appendChild(row);
  }
  function setBanner(id, show) {
    const element = byId(id);
    if (element) element.hidden = !show;
  }

  // -- the live aggregate ------------------------------------------------------------------
  function renderPrice(doc) {
    lastPrice = doc;
    lastPriceAt = performance.now();
    const aggregator = doc.aggregator || {};
    setBanner("aggregator-banner", !aggregator.reachable);
    text("aggregator-banner-text", "Aggregator unreachable at " + aggregator.target + ": " +
      (aggregator.error || "no answer yet") + ". This page recovers by itself when it returns.");
    setBanner("simulated-banner", Boolean(doc.simulated) || !byId("simulated-banner").hidden);
    byId("price-simulated").hidden = !doc.simulated;
    const status = doc.status || "UNREACHABLE";
    const statusElement = byId("price-status");
    statusElement.textContent = status;
    statusElement.className = "status status-" + status;
    const priceElement = byId("price-value");
    priceElement.textContent = cents(doc.price);
    priceElement.dataset.exact = doc.price || "";
    text("price-exact", doc.price || "\u2014");
    text("price-confidence", doc.available ? cents(doc.confidence) : "\u2014");
    text("price-final", doc.available ? (doc.final ? "final" : "round open") : "");
    text("price-minute", doc.minute_utc || "\u2014");
    byId("price-minute").href = doc.minute ? "/rounds/" + encodeURIComponent(String(doc.minute)) : "#rounds";
    text("price-method", doc.method || "\u2014");
    text("price-sources", doc.available ? String(doc.data_points) : "\u2014");
    text("price-nodes", doc.available ? String(doc.active_nodes) : "\u2014");
    const usdt = doc.usdt || {};
    text("price-usdt", usdt.converted ? "converted at " + usdt.rate + " USD"
      : usdt.at_par ? "taken at par with USD (no fresh USDT/USD rate)" : "\u2014");
    text("price-feed", aggregator.mode + " \u00b7 " + aggregator.target);
    text("price-message", doc.available ? doc.message : (doc.error ? doc.error.message : ""));
    byId("price-age").dataset.age = doc.age_seconds === null || doc.age_seconds === undefined
      ? "" : String(doc.age_seconds);
    tickAge();
    renderInputs(doc.available ? doc.inputs : [], doc.available ? doc.excluded : []);
  }
  function tickAge() {
    const element = byId("price-age");
    if (!element || element.dataset.age === "" || element.dataset.age === undefined) {
      if (element) element.textContent = "\u2014";
      return;
    }
    const elapsed = Math.floor((performance.now() - lastPriceAt) / 1000);
    element.textContent = String(Number(element.dataset.age) + (lastPrice ? elapsed : 0));
  }
  function renderInputs(inputs, excluded) {
    const inputsBody = byId("inputs-body");
    inputsBody.replaceChildren();
    for (const item of inputs) {
      const row = document.createElement("tr");
      cell(row, item.exchange);
      cell(row, item.price + " " + item.quote, "num");
      cell(row, item.usd_price || "\u2014", "num");
      cell(row, percent(item.deviation), "num");
      cell(row, item.minute_utc || "\u2014");
      cell(row, item.node_ids.join(", "));
      inputsBody.appendChild(row);
    }
    if (!inputs.length) emptyRow(inputsBody, 6, "no inputs");
    const excludedBody = byId("excluded-body");
    excludedBody.replaceChildren();
    for (const item of excluded) {
      const row = document.createElement("tr");
      row.className = "excluded";
      cell(row, item.exchange);
      cell(row, item.price + " " + item.quote, "num");
      cell(row, code(item.excluded_reason || ""));
      cell(row, item.excluded_detail || "");
      cell(row, percent(item.deviation), "num");
      excludedBody.appendChild(row);
    }
    if (!excluded.length) emptyRow(excludedBody, 5, "none excluded");
  }

  // -- rounds: table and chart ---------------------------------------------------------------
  async function getJson(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const doc = await response.json();
    if (!response.ok) throw new Error(doc.error ? doc.error.message : response.statusText);
    return doc;
  }
  function renderRoundsTable(rounds) {
    const tbody = byId("rounds-body");
    tbody.replaceChildren();
    for (const round of rounds.slice(0, recentRounds)) {
      const row = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "/rounds/" + encodeURIComponent(String(round.minute));
      link.textContent = round.minute_utc;
      cell(row, link);
      const statusCell = cell(row, span(round.status, "status status-" + round.status));
      if (round.simulated) {
        statusCell.appendChild(document.createTextNode(" "));
        statusCell.appendChild(span("SIMULATED", "tag simulated"));
        setBanner("simulated-banner", true);
      }
      cell(row, cents(round.price), "num");
      cell(row, cents(round.confidence), "num");
      cell(row, round.inputs.map((item) => item.exchange).join(", "));
      const excludedCell = cell(row, "");
      round.excluded.forEach((item, index) => {
        if (index) excludedCell.appendChild(document.createTextNode(", "));
        excludedCell.appendChild(document.createTextNode(item.exchange + " ("));
        excludedCell.appendChild(code(item.excluded_reason || ""));
        excludedCell.appendChild(document.createTextNode(")"));
      });
      cell(row, (round.close_reason || "").replace("_", " "));
      tbody.appendChild(row);
    }
    if (!rounds.length) emptyRow(tbody, 7, "no closed rounds yet");
  }
  function chartData(rounds) {
    const ordered = rounds.slice().sort((a, b) => a.minute - b.minute);
    const exchanges = new Set();
    for (const round of ordered) {
      for (const item of round.inputs.concat(round.excluded)) exchanges.add(item.exchange);
    }
    const names = Array.from(exchanges).sort();
    const xs = ordered.map((round) => round.minute);
    const aggregate = ordered.map((round) => (round.price === null ? null : Number(round.price)));
    const kept = names.map((name) => ordered.map((round) => {
      const item = round.inputs.find((input) => input.exchange === name);
      return item && item.usd_price !== null ? Number(item.usd_price) : null;
    }));
    const excluded = names.map((name) => ordered.map((round) => {
      const item = round.excluded.find((input) => input.exchange === name);
      return item && item.usd_price !== null ? Number(item.usd_price) : null;
    }));
    return { names, data: [xs, aggregate, ...kept, ...excluded] };
  }
  const palette = ["#d9822b", "#2b8fd9", "#7a3fc4", "#2f9e6b", "#c43f6a"];
  function drawChart(rounds) {
    const container = byId("chart");
    const { names, data } = chartData(rounds);
    container.dataset.points = String(data[0].length);
    container.dataset.series = String(data.length - 1);
    if (chart) chart.destroy();
    chart = null;
    container.replaceChildren();
    if (!data[0].length) {
      text("chart-message", "no closed rounds in the last " + chartHours + " hours yet");
      return;
    }
    text("chart-message", "");
    const series = [
      {},
      { label: "aggregate", stroke: "#1d232b", width: 2.5, points: { show: true, size: 5 } },
      ...names.map((name, index) => ({
        label: name, stroke: palette[index % palette.length], width: 1, points: { show: false },
      })),
      ...names.map((name, index) => ({
        label: name + " excluded", stroke: palette[index % palette.length], width: 0,
        paths: () => null, points: { show: true, size: 10, width: 2, fill: "#ffffff" },
      })),
    ];
    chart = new uPlot({
      width: Math.max(320, container.clientWidth || 800),
      height: 320,
      scales: { x: { time: true } },
      // UTC, like every time in the tables (the browser's zone would differ per viewer).
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
      series,
      axes: [{}, { label: "USD", size: 80 }],
      cursor: { drag: { x: true, y: false } },
      // The visible time range, for people's tools and the browser test (zoom is observable).
      hooks: {
        setScale: [(plot, key) => {
          if (key !== "x") return;
          container.dataset.xMin = String(Math.round(plot.scales.x.min));
          container.dataset.xMax = String(Math.round(plot.scales.x.max));
        }],
      },
    }, data, container);
  }
  async function refreshRounds() {
    const latest = lastPrice && lastPrice.minute ? lastPrice.minute : Math.floor(Date.now() / 60000) * 60;
    const from = Math.max(60, Math.floor((latest - chartHours * 3600) / 60) * 60);
    try {
      const doc = await getJson("/api/rounds?from=" + from + "&limit=1000");
      renderRoundsTable(doc.rounds);
      drawChart(doc.rounds);
    } catch (error) {
      text("chart-message", String(error.message || error));
    }
  }
  async function refreshNodes() {
    try {
      const doc = await getJson("/api/nodes");
      text("nodes-note", doc.note || "");
      const tbody = byId("nodes-body");
      tbody.replaceChildren();
      for (const node of doc.nodes) {
        const row = document.createElement("tr");
        cell(row, code(node.node_id));
        cell(row, node.exchange);
        cell(row, span(node.active ? "active" : "inactive", "state " + (node.active ? "active" : "inactive")));
        cell(row, node.last_seen_utc || "\u2014");
        cell(row, node.submissions === null ? "\u2014" : String(node.submissions), "num");
        const signature = cell(row, span(node.signature_status, "sig sig-" + node.signature_status));
        if (node.public_key) {
          signature.appendChild(document.createTextNode(" "));
          const key = code(node.public_key.slice(0, 16) + "\u2026");
          key.className = "key";
          signature.appendChild(key);
        }
        tbody.appendChild(row);
      }
      if (!doc.nodes.length) emptyRow(tbody, 6, "no nodes known");
    } catch (error) {
      text("nodes-note", String(error.message || error));
    }
  }

  // -- wiring ----------------------------------------------------------------------------------
  let roundsTimer = null;
  function scheduleRoundsRefresh() {
    // Several round events arrive together after an outage: one refresh for all of them.
    if (roundsTimer !== null) return;
    roundsTimer = setTimeout(() => { roundsTimer = null; refreshRounds(); }, 250);
  }
  const source = new EventSource("/api/stream");
  source.addEventListener("price", (event) => {
    const doc = JSON.parse(event.data);
    const previousMinute = lastPrice ? lastPrice.minute : null;
    renderPrice(doc);
    if (previousMinute !== null && doc.minute !== previousMinute) scheduleRoundsRefresh();
  });
  source.addEventListener("round", () => scheduleRoundsRefresh());
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.OPEN) {
      setBanner("aggregator-banner", true);
      text("aggregator-banner-text", "Lost the connection to the explorer; reconnecting\u2026");
    }
  });
  setInterval(tickAge, 1000);
  setInterval(refreshNodes, 15000);
  window.addEventListener("resize", () => {
    if (chart) chart.setSize({ width: byId("chart").clientWidth, height: 320 });
  });
  refreshRounds();
})();
