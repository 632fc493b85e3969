// Live refresh: the page's main part is fetched again every few seconds (server-rendered, as the
// first time), unless the user is typing in a form or the tab is hidden.
(function () {
  "use strict";
  var body = document.body;
  var page = body.getAttribute("data-page");
  var every = parseInt(body.getAttribute("data-refresh-ms") || "2000", 10);
  if (!page || page === "activity") { return; }
  function busy() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA") ||
      document.querySelector("details[open]") !== null;
  }
  function refresh() {
    if (document.hidden || busy()) { return; }
    var url = window.location.pathname + window.location.search;
    url += (url.indexOf("?") < 0 ? "?" : "&") + "partial=1";
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}}).then(function (r) {
      if (r.redirected || r.status === 401) { window.location.reload(); return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html !== null && !busy()) {
        document.getElementById("main").innerHTML = html;
        body.setAttribute("data-refreshed", String(Date.now()));
      }
    }).catch(function () { /* the frontend is restarting: try again next time */ });
  }
  window.setInterval(refresh, every);
})();
