// The live chart of requests per second and errors per second by AWS exception name (uPlot).
(function () {
  "use strict";
  var palette = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var chart = null, names = null;
  function build(data) {
    var series = [{}, {label: "successful requests/s", stroke: "#1f77b4", width: 2}];
    names.forEach(function (n, i) { series.push({label: n + " /s", stroke: palette[i % palette.length], width: 1.5}); });
    var el = document.getElementById("chart");
    el.innerHTML = "";
    chart = new uPlot({width: Math.min(el.clientWidth || 1000, 1100), height: 360, series: series,
                       axes: [{}, {label: "per second"}], scales: {x: {time: true}}}, data, el);
  }
  function rows(d) {
    // Built from DOM nodes, not HTML text: an outcome name is never markup.
    var t = document.getElementById("rates");
    while (t.rows.length > 1) { t.deleteRow(1); }
    function add(name, values) {
      var last = values.length ? values[values.length - 1] : 0;
      var minute = values.slice(-60).reduce(function (a, b) { return a + b; }, 0);
      var tr = t.insertRow(-1);
      tr.setAttribute("data-outcome", name);
      [name, String(last), String(minute)].forEach(function (text, i) {
        var td = tr.insertCell(-1);
        td.textContent = text;
        if (i > 0) { td.className = "num"; }
      });
    }
    add("ok", d.ok);
    Object.keys(d.errors).forEach(function (n) { add(n, d.errors[n]); });
  }
  function tick() {
    fetch("/api/activity", {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d) { return; }
        var errorNames = Object.keys(d.errors).sort();
        var data = [d.t, d.ok].concat(errorNames.map(function (n) { return d.errors[n]; }));
        if (chart === null || JSON.stringify(errorNames) !== JSON.stringify(names)) {
          names = errorNames; build(data);
        } else { chart.setData(data); }
        rows(d);
        document.body.setAttribute("data-refreshed", String(Date.now()));
      }).catch(function () {});
  }
  tick();
  window.setInterval(tick, 1000);
})();
