// Atelier dashboard: live job status, live page parts, the image lightbox, copy buttons, and the API helper the review screen uses.
"use strict";

const Atelier = (() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
  // The page's words in the person's language (atelier_frontend/texts.py), English as fallback.
  let words = null;
  const t = (key, fallback) => {
    if (words === null) {
      const source = document.getElementById("atelier-text");
      words = source ? JSON.parse(source.textContent) : {};
    }
    return words[key] || fallback;
  };

  // Calls the REST API as the signed-in person: session cookie, CSRF token, current project.
  // A request that never got an answer (offline, server down) comes back as status 0, like any
  // refusal, so that no caller is left waiting on a promise that rejected.
  // ``keepalive``: the request outlives the page (one sent as the page goes away).
  async function api(path, { method = "GET", body, keepalive = false } = {}) {
    let response;
    try {
      response = await fetch(`/api/v1/${path}`, {
        method,
        keepalive,
        credentials: "same-origin",
        headers: {
          "Accept": "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": meta("csrf-token"),
          "X-Atelier-Project": meta("atelier-project"),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { ok: false, status: 0, data: null };
    }
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    return { ok: response.ok, status: response.status, data };
  }

  function errorText(result) {
    if (result.status === 0) return t("unreachable", "The server could not be reached: check the connection and try again.");
    const error = result.data && result.data.error;
    if (!error) return `HTTP ${result.status}`;
    const details = error.details ? Object.entries(error.details).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ") : "";
    return details ? `${error.message} (${details})` : error.message;
  }

  // The status cell as the server renders it (_status.html): a finished job's review state, a running
  // job's bar with its progress in words ("37 of 64 tokens"), in the page's language.
  function paintStatus(cell, job) {
    cell.innerHTML = job.html;
  }

  // Polls /jobs/status/ every second for the jobs on the page that have not finished; the jobs
  // list's first page also asks for jobs created since it loaded that match its filters, and
  // prepends them.
  function pollJobs() {
    const table = document.getElementById("jobs-table");
    const single = document.getElementById("job-status");
    const source = table || single;
    if (!source) return;
    const url = source.dataset.poll;
    const live = Boolean(table && table.dataset.since);
    const tick = async () => {
      const rows = table ? [...table.querySelectorAll("tr[data-job][data-finished='0']")] : (single.dataset.finished === "0" ? [single] : []);
      if (!rows.length && !live) return;
      let query = `ids=${rows.map((r) => r.dataset.job).join(",")}`;
      if (live) query += `&since=${encodeURIComponent(table.dataset.since)}&${table.dataset.filters || ""}`;
      try {
        const response = await fetch(`${url}?${query}`, { credentials: "same-origin" });
        const answer = await response.json();
        for (const job of answer.jobs) {
          const row = rows.find((r) => r.dataset.job === job.id);
          if (!row) continue;
          paintStatus(table ? row.querySelector(".status-cell") : row, job);
          if (job.finished) {
            row.dataset.finished = "1";
            if (single) { window.location.reload(); return; }  // the outputs are ready to show
          }
        }
        if (live && answer.new) {
          const body = table.tBodies[0];
          for (const job of [...answer.new].reverse()) {  // oldest first, each on top
            if (body.querySelector(`tr[data-job="${job.id}"]`)) continue;
            body.querySelector("tr > td.empty")?.parentElement.remove();
            const holder = document.createElement("tbody");
            holder.innerHTML = job.html.trim();
            const row = holder.firstElementChild;
            row.classList.add("arrived");
            body.prepend(row);
          }
          if (answer.since) table.dataset.since = answer.since;
        }
      } catch (e) { /* a missed poll is retried on the next tick */ }
      setTimeout(tick, 1000);
    };
    setTimeout(tick, 1000);
  }

  // A part of the page that the server renders again on request (data-refresh, every data-every ms):
  // asked for only while the tab is shown, and kept as it was when an answer does not come.
  function refreshParts() {
    document.querySelectorAll("[data-refresh]").forEach((part) => {
      const every = Number(part.dataset.every) || 5000;
      const tick = async () => {
        if (document.visibilityState === "visible") {
          try {
            const response = await fetch(part.dataset.refresh, { credentials: "same-origin" });
            // signed out meanwhile: the answer is the login page, which belongs in the window, not in the part
            if (response.redirected) { window.location.reload(); return; }
            if (response.ok) part.innerHTML = await response.text();
            // what the part followed has finished (an evaluation run): the whole page shows its results now
            if (part.querySelector("[data-reload]")) { window.location.reload(); return; }
            // nothing left going in it (exports in the background): the part shows its last state, asked for no more
            if (part.querySelector("[data-settled]")) return;
          } catch (e) { /* offline for a moment: the next tick tries again */ }
        }
        setTimeout(tick, every);
      };
      setTimeout(tick, every);
    });
  }

  function lightbox() {
    const box = document.getElementById("lightbox");
    if (!box) return;
    document.querySelectorAll(".gallery a.shot").forEach((link) => link.addEventListener("click", (event) => {
      event.preventDefault();
      box.querySelector("img").src = link.href;
      box.showModal();
    }));
    box.addEventListener("click", (event) => { if (event.target === box) box.close(); });
  }

  // An Enter that picks a candidate in an input method (pinyin and the like) is the IME's, not ours.
  const composing = (event) => event.isComposing || event.keyCode === 229;

  // One submission per page view: a second Enter or Ctrl+Enter while the first is on its way would
  // send the same request again (requestSubmit() does not care that the button is disabled), making
  // two jobs or two chat messages. A page the browser restores on Back may be sent again.
  function submitOnce(form, onSubmit = () => {}) {
    let sent = false;
    form.addEventListener("submit", (event) => {
      if (sent) { event.preventDefault(); return; }
      sent = true;
      onSubmit(true);
    });
    window.addEventListener("pageshow", (event) => { if (event.persisted) { sent = false; onSubmit(false); } });
    return () => sent;
  }

  function submitShortcut() {
    const form = document.getElementById("job-form");
    if (!form) return;
    form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
    });
    submitOnce(form, (sent) => { const b = form.querySelector("button[type=submit]"); if (b) b.disabled = sent; });
    // Enter in the template's name saves the template: the form's default button would submit a job.
    const name = document.getElementById("template-name"), save = document.getElementById("save-template");
    if (name && save) {
      name.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.ctrlKey && !event.metaKey && !composing(event)) { event.preventDefault(); form.requestSubmit(save); }
      });
    }
  }

  function chatComposer() {
    const box = document.getElementById("chat-message");
    if (!box) return;
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !composing(event)) { event.preventDefault(); if (box.value.trim()) box.form.requestSubmit(); }
    });
    // The page reloads when a pending reply arrives: what the person was typing meanwhile is kept
    // for this thread in the tab's session storage and put back; a message sent is no draft.
    const draftKey = `atelier-chat-draft:${window.location.pathname}`;
    const drafts = (() => { try { return window.sessionStorage; } catch (e) { return null; } })();  // null when switched off
    const sent = submitOnce(box.form, (sending) => { if (sending && drafts) drafts.removeItem(draftKey); });
    if (drafts) {
      const draft = drafts.getItem(draftKey);
      drafts.removeItem(draftKey);
      if (draft && !box.value) box.value = draft;
      window.addEventListener("pagehide", () => { if (!sent() && box.value.trim()) drafts.setItem(draftKey, box.value); });
    }
    const list = document.getElementById("messages");
    if (list) list.scrollTop = list.scrollHeight;
  }

  // A destructive form asks first, in the page's language: data-confirm on the form, on the button that sends
  // it, on a checkbox in it that makes the action destructive (asked only when ticked), or on a select's option
  // (asked only when chosen: the policy's "release after screening", marked so while it is not the policy).
  // Dismissed, nothing is sent. Listening on the document, in the capture phase, it asks before any other submit handler runs.
  // Without scripts the form is sent as it is, as the server expects.
  function confirmations() {
    document.addEventListener("submit", (event) => {
      const form = event.target;
      const questions = [form.dataset.confirm, event.submitter?.dataset.confirm,
        ...[...form.querySelectorAll("input[data-confirm]:checked, option[data-confirm]:checked")].map((box) => box.dataset.confirm)];
      for (const question of questions) {
        if (question && !window.confirm(question)) { event.preventDefault(); event.stopImmediatePropagation(); return; }
      }
    }, true);
  }

  // A select that acts as soon as it is changed (data-commit="change": the language and project switchers)
  // acts on a choice made with the mouse or in its open list, never while the keyboard moves through the
  // options of a closed one: Chromium fires "change" on each arrow key (and Home, End, Page Up/Down, typing),
  // so a keyboard user could not look at the options without leaving the page. Such a choice waits for Enter
  // or the form's button (sent by the page for pages without scripts too; shown here once the select holds a
  // choice not yet sent).
  function commitSelects() {
    document.querySelectorAll("select[data-commit=change]").forEach((select) => {
      const form = select.form, button = form.querySelector("button.commit");
      const sent = select.value;
      let keyed = false;  // the next change comes from a key that moves through a closed select's options
      const show = () => { if (button) button.hidden = select.value === sent; };
      show();
      select.addEventListener("pointerdown", () => { keyed = false; });
      select.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !composing(event)) {
          event.preventDefault();
          keyed = false;
          if (select.value !== sent) form.requestSubmit(button || undefined);
          return;
        }
        // Space, Alt+arrow and F4 open the list, where a choice is deliberate; other keys move through the options
        const opens = event.key === " " || event.key === "F4" || (event.altKey && /^Arrow(Up|Down)$/.test(event.key));
        keyed = !opens && !["Tab", "Shift", "Escape"].includes(event.key);
      });
      select.addEventListener("change", () => {
        if (keyed) { keyed = false; show(); return; }
        if (select.value !== sent) form.requestSubmit(button || undefined);
      });
    });
  }

  // A shortcut's hint names the key of the person's platform: a page says <kbd data-apple="⌘ ↵">Ctrl ↵</kbd>,
  // Ctrl as served (the handlers take Ctrl and Cmd alike, so it is true everywhere, a Mac included), and
  // ⌘ on a Mac, an iPhone or an iPad. Chromium's navigator.userAgentData.platform says "macOS" (a small m)
  // or "iOS"; Safari and Firefox have no userAgentData, and their navigator.platform says "MacIntel", "iPhone"
  // or "iPad" (an iPad's Safari says "MacIntel" too).
  const apple = /^(mac|iphone|ipad|ipod|ios)/i.test(navigator.userAgentData?.platform || navigator.platform || "");
  function platformKeys() {
    if (!apple) return;
    document.querySelectorAll("kbd[data-apple]").forEach((key) => { key.textContent = key.dataset.apple; });
  }

  // A form the server refused, far down a long page (the settings), is brought into view when the page comes
  // back: its errors at the top of the view, and the focus on its first input marked invalid (else on the
  // errors), scrolled to if the errors leave it out of sight; so that Save is seen to have answered. A closed
  // <details> holding it is opened first.
  function revealRefusedForm() {
    const refused = document.querySelector("[data-refused]");
    if (!refused) return;
    // a form posted from an address with a fragment (#plugins, or the one a save came back to) comes back with it,
    // and the browser's scroll to that fragment, after this, took the focus away from the field refused
    if (location.hash) history.replaceState(history.state, "", location.pathname + location.search);
    const errors = refused.querySelector("[role=alert], .field-error") || refused;
    const target = refused.querySelector("[aria-invalid=true]") || errors;
    for (let closed = target.closest("details:not([open])"); closed; closed = closed.parentElement.closest("details:not([open])")) {
      closed.open = true;
    }
    if (!target.matches("input, select, textarea, button")) target.tabIndex = -1;
    errors.scrollIntoView({ block: "start" });
    const box = target.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) target.scrollIntoView({ block: "center" });
    target.focus({ preventScroll: true });
  }

  // A secret shown once (a new invitation's link): its Copy button puts it on the clipboard and says so; where the
  // clipboard is refused (a page served over plain HTTP but from localhost), the text is selected for Ctrl+C.
  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach((button) => {
      button.hidden = false;
      button.addEventListener("click", async () => {
        const source = document.getElementById(button.dataset.copy);
        if (!source) return;
        try {
          await navigator.clipboard.writeText(source.textContent.trim());
          button.textContent = button.dataset.copied;
        } catch (e) {
          window.getSelection().selectAllChildren(source);
          button.textContent = button.dataset.select;
        }
      });
    });
  }

  // A picture whose file is gone from storage (erased, or a storage lost) says so in words (its data-missing), where
  // the browser would show a broken image; its download link stays, and answers the same.
  function missingImages() {
    document.querySelectorAll("img[data-missing]").forEach((img) => {
      const missing = () => {
        const note = document.createElement("p");
        note.className = "missing-file small";
        note.textContent = img.dataset.missing;
        (img.closest("a") || img).replaceWith(note);
      };
      if (img.complete && img.naturalWidth === 0) missing();  // failed before this script ran
      else img.addEventListener("error", missing, { once: true });
    });
  }

  document.addEventListener("DOMContentLoaded", () => { revealRefusedForm(); confirmations(); commitSelects(); copyButtons(); platformKeys(); pollJobs(); refreshParts(); lightbox(); missingImages(); submitShortcut(); chatComposer(); });
  return { api, composing, errorText, meta, t };
})();
