// The training form: a held-out validation dataset replaces the split, so the split's share is
// greyed out while one is chosen (the server ignores it then too). The form is re-rendered by
// htmx when it has errors, hence the delegated listeners.
(function () {
  function sync() {
    const pick = document.getElementById("f-val_dataset_id");
    const share = document.getElementById("f-val_percent");
    if (pick && share) share.disabled = pick.value !== "";
  }
  document.addEventListener("change", (e) => {
    if (e.target && e.target.id === "f-val_dataset_id") sync();
  });
  document.addEventListener("DOMContentLoaded", sync);
  document.addEventListener("htmx:afterSwap", sync);
})();
