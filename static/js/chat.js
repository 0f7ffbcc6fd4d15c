// Chat: each streaming answer opens its own EventSource and appends tokens as text (never as
// HTML); when the answer is done (or failed) the server's rendering replaces it. Enter sends,
// Shift+Enter starts a new line. Stop cancels the generation on the worker.
(function () {
  function follow(el) {
    if (el.dataset.following) return;
    el.dataset.following = "1";
    const box = el.querySelector(".content");
    const status = el.querySelector(".status-text");
    const source = new EventSource(el.dataset.stream);
    const finish = () => {
      source.close();
      if (window.htmx) htmx.ajax("GET", el.dataset.final, { target: el, swap: "outerHTML" });
    };
    source.addEventListener("status", (e) => {
      const state = JSON.parse(e.data).state;
      if (status) status.textContent = status.dataset[state] || state;
    });
    source.addEventListener("token", (e) => {
      box.textContent += JSON.parse(e.data).text;
      if (status) status.textContent = "";
      el.scrollIntoView({ block: "end" });
    });
    source.addEventListener("done", finish);
    const showError = (text) => {
      const alert = document.createElement("div");
      alert.className = "alert alert-error";
      alert.setAttribute("role", "alert");
      alert.textContent = text;
      el.querySelector(".content, .alert-error").replaceWith(alert);
      if (status) status.textContent = "";
    };
    // The server's `error` event carries `text`, already in the reader's language. The browser's
    // own `error` has no data: a dropped connection it retries (with Last-Event-ID), or one the
    // server refused (the answer expired, or Redis restarted or is down), after which it gives up
    // (CLOSED): say so rather than wait forever, and do not reload a stream that cannot be read.
    const giveUp = (text) => {
      source.close();
      showError(text);
      const stop = el.querySelector(".stop-button");
      if (stop) stop.disabled = true;
    };
    source.addEventListener("error", (e) => {
      if (e.data) {
        const error = JSON.parse(e.data);
        // stream_lost: Redis went away mid-answer. The stored answer is not final yet (its
        // worker may still write it), and reloading it would only follow a stream that is gone.
        if (error.code === "stream_lost") giveUp(error.text);
        else { showError(error.text); finish(); }
      } else if (source.readyState === EventSource.CLOSED) {
        giveUp(el.dataset.lost);
      }
    });
    const stop = el.querySelector(".stop-button");
    if (stop) stop.addEventListener("click", () => { fetch(el.dataset.cancel, { method: "POST", headers: window.tunelabCsrfHeaders ? window.tunelabCsrfHeaders() : {} }); stop.disabled = true; });
  }
  function scan() { document.querySelectorAll("[data-stream]").forEach(follow); }
  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("htmx:afterSettle", scan);
  // A message sent: empty the box and drop the "no messages yet" note. Here rather than in an
  // hx-on attribute, which htmx runs through Function() and the Content-Security-Policy forbids.
  document.addEventListener("htmx:afterRequest", (e) => {
    const form = e.detail.elt;
    if (form.id !== "chat-form" || !e.detail.successful) return;
    form.reset();
    document.getElementById("chat-empty")?.remove();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.id === "chat-text" && e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      htmx.trigger(document.getElementById("chat-form"), "submit");
    }
  });
})();
