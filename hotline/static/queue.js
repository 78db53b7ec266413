// The queue page: refresh the rows every few seconds and move through them with the keyboard.
// j / k move the selection, Enter opens the selected ticket, c claims it (or the next one).
(function () {
  "use strict";
  var table = document.getElementById("queue");
  if (!table) { return; }
  var body = document.getElementById("queue-rows");
  var selected = null;

  function rows() { return Array.prototype.slice.call(body.querySelectorAll("tr[data-number]")); }

  function select(row) {
    rows().forEach(function (other) { other.classList.remove("selected"); other.removeAttribute("aria-selected"); });
    selected = row ? row.getAttribute("data-number") : null;
    if (row) {
      row.classList.add("selected");
      row.setAttribute("aria-selected", "true");
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function current() {
    return rows().filter(function (row) { return row.getAttribute("data-number") === selected; })[0] || null;
  }

  function move(step) {
    var list = rows();
    if (!list.length) { return; }
    var index = list.indexOf(current());
    var next = index < 0 ? 0 : Math.min(list.length - 1, Math.max(0, index + step));
    select(list[next]);
  }

  function claim() {
    var row = current();
    var button = row && row.querySelector(".claim-row button");
    (button || document.getElementById("claim-next")).click();
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (target.closest && target.closest("input, select, textarea, [contenteditable]")) { return; }
    if (event.key === "j") { move(1); }
    else if (event.key === "k") { move(-1); }
    else if (event.key === "c") { claim(); }
    else if (event.key === "Enter" && current() && target.tagName !== "BUTTON" && target.tagName !== "A") {
      window.location.href = current().getAttribute("data-href");
    } else { return; }
    event.preventDefault();
  });

  body.addEventListener("click", function (event) {
    var row = event.target.closest("tr[data-number]");
    if (row) { select(row); }
  });

  function refresh() {
    fetch(table.getAttribute("data-rows-url"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        // A logged-out session is redirected to the login page: show it instead of a broken table.
        if (response.redirected || !response.ok) { window.location.reload(); return null; }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        body.innerHTML = html;
        var row = current();
        if (row) { select(row); }
      })
      .catch(function () { /* The next tick tries again; the table keeps its last content. */ });
  }

  var seconds = parseInt(table.getAttribute("data-refresh-seconds"), 10) || 15;
  window.setInterval(refresh, seconds * 1000);
}());
