// Live inbox: when the inbox's event stream (/api/gates/events) says the pending gates
// changed (a version other than the one drawn), fetch the list again (server-rendered,
// escaped) and merge it in: gates still pending keep their element, so an answer being
// typed is not lost; new ones appear, answered or expired ones go. Without JavaScript the
// page is the same, only static: reload to see new gates.
(function () {
  "use strict";
  var root = document.getElementById("inbox-root");
  if (!root || !window.EventSource || !window.fetch || !window.waypointFragment) { return; }

  function list() { return document.getElementById("inbox-list"); }
  function key(li) { return li.getAttribute("data-run") + "\u0000" + li.getAttribute("data-gate"); }

  function merge(fresh) {
    var old = list();
    var kept = {};
    old.querySelectorAll("li.gate").forEach(function (li) { kept[key(li)] = li; });
    var ol = fresh.querySelector("ol.inbox");
    Array.prototype.slice.call(ol.children).forEach(function (li) {
      var mine = kept[key(li)];
      if (mine && mine.getAttribute("data-asked") === li.getAttribute("data-asked")) {
        ol.replaceChild(mine, li);  // the same question: keep what was typed into its form
      }
    });
    old.replaceWith(fresh);
  }

  var refresh = window.waypointFragment(root.getAttribute("data-list"), "#inbox-list", function (fresh) {
    if (list()) {
      merge(fresh);
      document.title = "Inbox (" + fresh.getAttribute("data-total") + ") · waypoint";
    }
  });

  var source = new EventSource(root.getAttribute("data-events"));
  source.addEventListener("inbox", function (e) {  // first on (re)connecting, then after each change
    var drawn = list() ? list().getAttribute("data-version") : "";
    if (JSON.parse(e.data).version !== drawn) { refresh(); }
  });
  document.body.setAttribute("data-live", "on");
})();
