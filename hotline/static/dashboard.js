// The supervisor dashboard: refresh the tiles and watch lists from the live endpoint every few seconds, and
// draw the charts with ECharts from the charts endpoint. Labels arrive translated in the JSON.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) { return; }
  var words = document.getElementById("chart-words").dataset;
  var charts = [];

  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        // A logged-out session is redirected to the login page: show it instead of stale figures.
        if (response.redirected || !response.ok) { window.location.reload(); return null; }
        return response.json();
      });
  }

  // Live tiles and watch lists.

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function watchRow(item, state) {
    var tr = document.createElement("tr");
    tr.className = "sla-" + state;
    tr.dataset.number = item.number;
    var link = document.createElement("a");
    link.href = item.url;
    link.textContent = item.number;
    cell(tr, "").appendChild(link);
    var badge = document.createElement("span");
    badge.className = "priority p-" + item.priority;
    badge.textContent = item.priority;
    cell(tr, "").appendChild(badge);
    cell(tr, item.category);
    cell(tr, item.town);
    cell(tr, item.target);
    cell(tr, item.owner_label, "owner owner-" + item.owner);
    cell(tr, item.due);
    cell(tr, item.lateness, "sla");
    cell(tr, item.assignee);
    return tr;
  }

  function fillWatchList(table, items) {
    var body = table.tBodies[0];
    var state = table.dataset.rowState;
    var rows = items.map(function (item) { return watchRow(item, state); });
    if (!rows.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      cell(empty, table.dataset.empty).colSpan = 9;
      rows.push(empty);
    }
    body.replaceChildren.apply(body, rows);
  }

  function showLive(data) {
    document.querySelectorAll("[data-tile]").forEach(function (element) {
      element.textContent = data.tiles[element.dataset.tile];
    });
    ["at_risk", "breached"].forEach(function (key) {
      var box = document.querySelector('[data-tile-box="' + key + '"]');
      box.classList.toggle("tile-alert", data.tiles[key] > 0);
    });
    ["by_priority", "by_source"].forEach(function (group) {
      data[group].forEach(function (item) {
        var element = document.querySelector('[data-count="' + group + ":" + item.code + '"]');
        if (element) { element.textContent = item.count; }
      });
    });
    fillWatchList(document.getElementById("breached-list"), data.breached);
    fillWatchList(document.getElementById("at-risk-list"), data.at_risk);
    document.getElementById("live-updated").textContent = data.updated_at;
  }

  function refreshLive() {
    fetchJson(root.dataset.liveUrl)
      .then(function (data) { if (data) { showLive(data); } })
      .catch(function () { /* The next tick tries again; the page keeps its last figures. */ });
  }

  // Charts.

  function shortDays(days) { return days.map(function (day) { return day.slice(5); }); }

  function base(extra) {
    var option = {
      animation: false,
      tooltip: { trigger: "axis" },
      grid: { left: 48, right: 16, top: 40, bottom: 32, containLabel: true },
    };
    Object.keys(extra).forEach(function (key) { option[key] = extra[key]; });
    return option;
  }

  var builders = {
    sources: function (data) {
      return base({
        legend: { type: "scroll", top: 0 },
        xAxis: { type: "category", data: shortDays(data.days) },
        yAxis: { type: "value", name: words.tickets, minInterval: 1 },
        series: data.tickets_by_source.map(function (source) {
          return { name: source.label, type: "bar", stack: "tickets", data: source.counts };
        }),
      });
    },
    on_time: function (data) {
      var lines = [{ name: words.all, type: "line", data: data.on_time.all, connectNulls: false,
                     lineStyle: { width: 3 } }];
      data.on_time.by_target.forEach(function (target) {
        lines.push({ name: target.label, type: "line", data: target.rates, connectNulls: false });
      });
      return base({
        legend: { type: "scroll", top: 0 },
        xAxis: { type: "category", data: shortDays(data.days) },
        yAxis: { type: "value", name: words.percent, min: 0, max: 100 },
        series: lines,
      });
    },
    targets: function (data) {
      return base({
        tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
        xAxis: { type: "category", data: data.on_time.targets.map(function (target) { return target.label; }) },
        yAxis: { type: "value", name: words.percent, min: 0, max: 100 },
        series: [{ type: "bar", name: words.percent, label: { show: true, position: "top" },
                   data: data.on_time.targets.map(function (target) { return target.rate; }) }],
      });
    },
    first_response: function (data) {
      return base({
        xAxis: { type: "category", data: shortDays(data.days) },
        yAxis: { type: "value", name: words.minutes },
        series: [{ type: "line", name: words.minutes, data: data.first_response.median_minutes,
                   connectNulls: false }],
      });
    },
    acceptance: function (data) {
      return base({
        tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
        xAxis: { type: "value", name: words.minutes },
        yAxis: { type: "category", data: data.agencies.map(function (agency) { return agency.name; }) },
        series: [{ type: "bar", name: words.minutes, label: { show: true, position: "right" },
                   data: data.agencies.map(function (agency) { return agency.median_accept_minutes; }) }],
      });
    },
    towns: function (data) {
      return base({
        tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
        xAxis: { type: "category", data: data.towns.map(function (town) { return town.name; }),
                 axisLabel: { interval: 0, rotate: 40 } },
        yAxis: { type: "value", name: words.tickets, minInterval: 1 },
        series: [{ type: "bar", name: words.tickets, data: data.towns.map(function (town) { return town.count; }) }],
      });
    },
  };

  function drawCharts(data) {
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var chart = window.echarts.getInstanceByDom(element) || window.echarts.init(element);
      chart.setOption(builders[element.dataset.chart](data), true);
      charts.push(chart);
    });
    root.dataset.chartsReady = "true";
  }

  if (window.echarts) {
    fetchJson(root.dataset.chartsUrl).then(function (data) { if (data) { drawCharts(data); } });
    window.addEventListener("resize", function () { charts.forEach(function (chart) { chart.resize(); }); });
  }

  var seconds = parseInt(root.dataset.refreshSeconds, 10) || 15;
  window.setInterval(refreshLive, seconds * 1000);
}());
