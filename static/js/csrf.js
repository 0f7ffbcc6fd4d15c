// Sends the login session's CSRF token (the csrf-token meta tag, present when accounts are on)
// with every state-changing request: htmx requests get the X-CSRF-Token header, plain forms a
// hidden csrf_token field, and other scripts can call window.tunelabCsrfHeaders().
(function () {
  "use strict";
  function token() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  window.tunelabCsrfHeaders = function () {
    const value = token();
    return value ? { "X-CSRF-Token": value } : {};
  };
  document.addEventListener("htmx:configRequest", (event) => {
    const value = token();
    if (value && event.detail.verb !== "get") event.detail.headers["X-CSRF-Token"] = value;
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const value = token();
    if (!value || !(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") return;
    if (!form.querySelector('input[name="csrf_token"]')) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "csrf_token";
      input.value = value;
      form.appendChild(input);
    }
  }, true);
})();
