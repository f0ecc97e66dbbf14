// Live sync progress: every element with data-status-url and data-active polls that
// connector's status API (session auth) and updates its badge and progress bar; when the
// sync is over the page reloads once, to show the new counts and any error.
(function () {
  "use strict";
  var POLL_MS = 1500;
  var labelsElement = document.getElementById("status-labels");
  var labels = labelsElement ? JSON.parse(labelsElement.textContent) : {};

  function part(card, role) {
    return card.querySelector('[data-role="' + role + '"]');
  }

  function formatted(number) {
    return Number(number || 0).toLocaleString("en-US");
  }

  function show(card, data) {
    var run = data.current_run, health = data.health || data.status;
    var badge = part(card, "badge"), progress = part(card, "progress");
    if (badge && labels[health] && !badge.classList.contains("unavailable")) {
      badge.className = "badge " + health;
      badge.textContent = labels[health];
    }
    if (!progress) return;
    var bar = progress.querySelector(".bar"), fill = bar.querySelector("span"), text = part(card, "progress-text");
    progress.hidden = false;
    if (!run) {
      bar.classList.remove("indeterminate");
      bar.classList.add("done");
      fill.style.width = "100%";
      bar.setAttribute("aria-valuenow", "100");
      text.textContent = health === "connected" ? "Sync finished" : "Sync stopped";
      return;
    }
    var total = run.progress_total, percent = total ? Math.min(100, Math.floor(100 * run.progress_done / total)) : null;
    bar.classList.toggle("indeterminate", percent === null);
    fill.style.width = percent === null ? "" : percent + "%";
    if (percent !== null) bar.setAttribute("aria-valuenow", String(percent));
    text.textContent = run.status === "queued" ? "Waiting to start…"
      : (percent === null ? "" : percent + "% · ") + formatted(run.fetched) + " fetched";
  }

  function poll(card) {
    fetch(card.getAttribute("data-status-url"), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (data) {
        show(card, data);
        if (data.current_run) {
          window.setTimeout(function () { poll(card); }, POLL_MS);
        } else {
          window.setTimeout(function () { window.location.reload(); }, 800);
        }
      })
      .catch(function () {
        window.setTimeout(function () { poll(card); }, POLL_MS * 4);  // a hiccup: try again, more slowly
      });
  }

  document.querySelectorAll("[data-status-url][data-active]").forEach(poll);
})();
