// Puts the footer under the story: fetches the HTML fragment of
// newsflow-footer for the article the page is about and places it in
// #newsflow-footer. The service answers from memory with an ETag and a
// Cache-Control of its poll interval, so a CDN can sit in front of it.
//
// Where the API is: ?api=URL on the page's address, else the
// data-newsflow-api attribute of the article, else the local default.
// The page's origin must be in footer.cors_origins.
(function () {
  "use strict";
  var article = document.querySelector("[data-newsflow-article]");
  var slot = document.getElementById("newsflow-footer");
  if (!article || !slot) {
    return;
  }
  var api =
    new URLSearchParams(window.location.search).get("api") ||
    article.getAttribute("data-newsflow-api") ||
    "http://127.0.0.1:8081";
  var id = article.getAttribute("data-newsflow-article");
  var url = api.replace(/\/$/, "") + "/v1/articles/" + encodeURIComponent(id) + "/footer.html";
  fetch(url, { headers: { Accept: "text/html" } })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("newsflow-footer answered " + response.status);
      }
      return response.text();
    })
    .then(function (html) {
      // The fragment is the service's own, HTML-escaped; it holds no script.
      slot.innerHTML = html;
    })
    .catch(function (error) {
      // A page without its footer is still a page.
      slot.setAttribute("data-error", String(error));
    });
})();
