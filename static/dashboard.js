// Dashboard: swap in fresh figures every 30 seconds without reloading the page (no flicker,
// scroll position and open tables kept). Without JavaScript, a <noscript> meta refresh reloads
// the whole page instead, so this file is an improvement, never a requirement.
(function () {
  "use strict";
  var live = document.getElementById("dashboard-live");
  if (!live || !window.fetch || !window.DOMParser) {
    return;
  }
  var seconds = Number(live.getAttribute("data-refresh-seconds")) || 30;

  function openTables() {
    return Array.prototype.map.call(live.querySelectorAll("details[open]"), function (element) {
      return element.id;
    });
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("dashboard-live");
    if (!fresh) {
      return; // not the dashboard (signed out?): leave the page as it is
    }
    var open = openTables();
    live.innerHTML = fresh.innerHTML;
    open.forEach(function (id) {
      var element = id && document.getElementById(id);
      if (element) {
        element.open = true;
      }
    });
  }

  function refresh() {
    if (document.hidden) {
      schedule();
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("dashboard refresh: HTTP " + response.status);
        }
        return response.text();
      })
      .then(swap)
      .catch(function () {
        // Keep the figures on screen; the next round tries again.
      })
      .then(schedule);
  }

  function schedule() {
    window.setTimeout(refresh, seconds * 1000);
  }

  schedule();
})();
