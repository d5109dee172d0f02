// Herald admin: the issue page's live progress. Every page works without it
// (the issue page then refreshes itself with a meta refresh).
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box || !window.fetch) return;
  var url = box.getAttribute("data-progress-url");
  var last = null;
  function set(name, value) {
    var el = box.querySelector('[data-field="' + name + '"]');
    if (el) el.textContent = value;
  }
  function update(p) {
    var settled = p.total - p.pending;
    var pct = p.total > 0 ? Math.floor(100 * settled / p.total) : 100;
    // Still being built: the total is still growing (as percentDone).
    if (p.status === "building") pct = p.total > 0 ? Math.min(pct, 99) : 0;
    set("sent", p.sent); set("failed", p.failed); set("pending", p.pending);
    set("bounced", p.bounced); set("cancelled", p.cancelled); set("total", p.total);
    set("status", p.status); set("percent", pct + "%");
    var bar = document.getElementById("progress-bar");
    if (bar) { bar.value = pct; bar.textContent = pct + "%"; }
    var now = Date.now();
    // The rate over the last second; a quiet second keeps the last one.
    if (last && now > last.t && settled > last.settled) set("rate", ((settled - last.settled) * 1000 / (now - last.t)).toFixed(1));
    last = { t: now, settled: settled };
    box.setAttribute("data-status", p.status);
    return p.status === "sent" || p.status === "empty";
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (p) { if (!update(p)) setTimeout(tick, 1000); else hideReload(); })
      .catch(function () { setTimeout(tick, 5000); });
  }
  function hideReload() {
    var r = box.querySelector(".reload");
    if (r) r.hidden = true;
  }
  var status = box.getAttribute("data-status");
  if (status !== "sent" && status !== "empty") setTimeout(tick, 1000);
})();
