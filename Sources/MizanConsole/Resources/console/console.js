// Mizan console: times in the viewer's zone, copy buttons, confirmations, live refresh.
// No inline scripts (the Content-Security-Policy forbids them); everything hangs on data-* attributes.
"use strict";

(function () {
  const relative = (date) => {
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 0) return "in " + (-seconds) + " s";
    if (seconds < 90) return seconds + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " days ago";
  };

  const localizeTimes = (root) => {
    root.querySelectorAll("time[datetime]").forEach((element) => {
      const date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      const full = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
      element.title = full;
      element.textContent = element.hasAttribute("data-relative") ? relative(date) : full;
    });
  };

  const copy = async (button) => {
    const target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) return;
    const text = "value" in target ? target.value : target.textContent;
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (error) {
      if (target.select) {
        target.select();
        copied = document.execCommand && document.execCommand("copy");
      }
    }
    const label = button.textContent;
    button.textContent = copied ? "Copied" : "Select and copy";
    setTimeout(() => { button.textContent = label; }, 1600);
  };

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (button) {
      event.preventDefault();
      copy(button);
    }
  });

  // A form with data-confirm asks first; the server still shows its own confirmation page
  // when the form arrives without confirmed=1 (no script, or a script that failed).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (!form.querySelector("input[name=confirmed]")) {
      const field = document.createElement("input");
      field.type = "hidden";
      field.name = "confirmed";
      field.value = "1";
      form.appendChild(field);
    }
  });

  // Elements with data-live and an id are refreshed from the same page every few seconds,
  // without a full reload and without touching a form the viewer is typing in.
  const refresh = async () => {
    const live = document.querySelectorAll("[data-live][id]");
    if (live.length === 0 || document.hidden) return;
    try {
      const response = await fetch(location.href, { headers: { "X-Mizan-Console": "refresh" }, credentials: "same-origin", redirect: "manual" });
      if (response.status === 401 || response.type === "opaqueredirect") {
        location.reload();
        return;
      }
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      live.forEach((element) => {
        if (element.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")) return;
        const fresh = page.getElementById(element.id);
        if (fresh) {
          element.replaceWith(fresh);
          localizeTimes(fresh);
        }
      });
      const stamp = document.getElementById("refreshed");
      if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      // The gateway may be restarting; the next tick tries again.
    }
  };

  document.addEventListener("DOMContentLoaded", () => {
    localizeTimes(document);
    const live = document.querySelector("[data-live]");
    if (live) {
      const seconds = Math.max(2, parseInt(live.getAttribute("data-live"), 10) || 5);
      setInterval(refresh, seconds * 1000);
    }
  });
})();
