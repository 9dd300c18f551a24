// Live updates for a run's page: when the run's event stream says something happened,
// fetch the page's live part (server-rendered, escaped) and swap it in. Without
// JavaScript the page is the same, only static: reload to see new steps.
(function () {
  "use strict";
  var root = document.getElementById("live-root");
  if (!root || !window.EventSource || !window.fetch || !window.waypointFragment) { return; }
  var source = null;

  function live() { return document.getElementById("live"); }

  function finished() {
    var el = live();
    return el && el.getAttribute("data-finished") === "yes";
  }

  var refresh = window.waypointFragment(root.getAttribute("data-live"), "#live", function (fresh) {
    var old = live();
    // a new step, or the same last step with a new status (a run's row is released after its last step)
    if (old && (fresh.getAttribute("data-seq") !== old.getAttribute("data-seq") ||
                fresh.getAttribute("data-status") !== old.getAttribute("data-status"))) {
      old.replaceWith(fresh);
      document.body.setAttribute("data-live-seq", fresh.getAttribute("data-seq"));
    }
    if (finished() && source) { source.close(); source = null; }
  });

  function listen() {
    // Only steps after the ones drawn: ?after=seq (a reconnection sends Last-Event-ID itself).
    var seq = live() ? live().getAttribute("data-seq") : "0";
    source = new EventSource(root.getAttribute("data-events") + "?after=" + encodeURIComponent(seq));
    source.addEventListener("step", refresh);  // a step was written (id: its seq)
    source.addEventListener("run", refresh);   // the run's status or waiting gates changed
    source.addEventListener("end", function () {  // the run finished: nothing more will come
      source.close(); source = null; refresh();
    });
  }

  if (!finished()) { listen(); }
  document.body.setAttribute("data-live", "on");
})();
