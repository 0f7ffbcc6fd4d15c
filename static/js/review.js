// The blind review: keyboard shortcuts A, T and B press the matching vote button (unless the
// focus is in a form control), and the optional score boxes stay open from one pair to the
// next once someone opened them, since the next pair replaces the whole form.
(function () {
  const KEYS = { a: "vote-a", t: "vote-tie", b: "vote-b" };
  let scoring = false;
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (e.target.closest && e.target.closest("input, select, textarea, [contenteditable]")) return;
    const id = KEYS[e.key.toLowerCase()];
    const button = id && document.getElementById(id);
    if (!button || button.closest(".htmx-request")) return;
    e.preventDefault();
    button.click();
  });
  document.addEventListener("toggle", (e) => {
    if (e.target.classList && e.target.classList.contains("scores-box")) scoring = e.target.open;
  }, true);
  document.addEventListener("htmx:afterSwap", () => {
    if (scoring) document.querySelectorAll(".scores-box").forEach((box) => { box.open = true; });
  });
})();
