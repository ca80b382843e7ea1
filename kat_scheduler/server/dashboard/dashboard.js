// The dashboard's live updates: every few seconds the server renders the page's main part again
// (/dashboard/live, or the task's page) and it replaces the one shown. The requeue and drop buttons POST
// to the server after a confirmation; the header X-Dashboard-Action tells the server a page of its own
// sent them (another site's form cannot set it).
(function () {
  "use strict";
  const live = document.getElementById("live");
  const status = document.getElementById("status");
  const refreshFrom = live.dataset.refresh;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "muted";
  }

  async function refresh() {
    if (!refreshFrom) return;
    try {
      const response = await fetch(refreshFrom, { credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) { say("update failed: HTTP " + response.status, true); return; }
      live.innerHTML = await response.text();
      say("updated " + new Date().toLocaleTimeString(), false);
    } catch (error) {
      say("update failed: " + error, true);
    }
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const what = button.dataset.action + " " + button.dataset.kind + " task " + button.dataset.task;
    if (!window.confirm(what + "?")) return;
    const url = "/dashboard/dead-letters/" + encodeURIComponent(button.dataset.kind) + "/" +
      encodeURIComponent(button.dataset.task) + "/" + button.dataset.action;
    const response = await fetch(url, { method: "POST", credentials: "same-origin",
                                        headers: { "X-Dashboard-Action": "1" } });
    const answer = await response.json().catch(function () { return {}; });
    say(what + ": " + (answer.outcome || answer.detail || ("HTTP " + response.status)), !response.ok);
    await refresh();
  });

  if (refreshFrom) window.setInterval(refresh, 3000);
})();
