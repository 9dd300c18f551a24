// One piece the live pages share: fetch a server-rendered fragment (escaped by the server)
// and hand its element to the page, one fetch at a time. A refresh asked for while one is
// under way runs once more after it, so the last change is never missed.
//
//   var refresh = waypointFragment(url, "#live", function (fresh) { old.replaceWith(fresh); });
//   source.addEventListener("step", refresh);
window.waypointFragment = function (url, selector, apply) {
  "use strict";
  var pending = false, again = false;
  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector(selector);
        if (fresh) { apply(fresh); }
      })
      .catch(function () { /* the next event retries */ })
      .then(function () {
        pending = false;
        if (again) { again = false; refresh(); }
      });
  }
  return refresh;
};
