// The information-service panel: show matching article titles and summaries under the search box
// without leaving the page. Without JavaScript the form opens the article list instead.
(function () {
  "use strict";
  var form = document.getElementById("kb-panel-form");
  if (!form) { return; }
  var results = document.getElementById("kb-panel-results");
  var input = form.querySelector("input[name=q]");
  var timer = null;

  function show() {
    var query = input.value.trim();
    if (!query) { results.innerHTML = ""; return; }
    var url = form.getAttribute("data-panel-url") + "?q=" + encodeURIComponent(query);
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) { if (input.value.trim() === query) { results.innerHTML = html; } })
      .catch(function () { /* the form still works without the panel */ });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    show();
  });
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(show, 300);
  });
})();
