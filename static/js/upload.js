// Upload form: drag-and-drop onto the drop zone, the chosen file's name, and a progress bar
// fed by htmx's XHR progress events. Everything else is server-rendered.
(function () {
  const form = document.getElementById("upload-form");
  if (!form || form.dataset.ready) return;
  form.dataset.ready = "1";
  const input = document.getElementById("upload-file");
  const zone = document.getElementById("dropzone");
  const name = document.getElementById("upload-filename");
  const bar = document.getElementById("upload-bar");
  const show = () => { name.textContent = input.files.length ? input.files[0].name : ""; };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault(); zone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("dragging")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
  });
  form.addEventListener("htmx:xhr:progress", (e) => {
    if (e.detail.lengthComputable) bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
  });
  form.addEventListener("htmx:beforeRequest", () => { bar.value = 0; });
})();
