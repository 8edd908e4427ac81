// The round page's one script: copy the `committer verify` command (CSP: no inline script).
"use strict";
(function () {
  const button = document.getElementById("copy-verify");
  if (!button) return;
  button.addEventListener("click", async () => {
    const target = document.getElementById(button.dataset.target);
    try {
      await navigator.clipboard.writeText(target.textContent);
      button.textContent = "Copied";
    } catch (error) {
      // Clipboard refused (e.g. not a secure context): select the text for a manual copy.
      const range = document.createRange();
      range.selectNodeContents(target);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
})();
