// The review queue: one item at a time, claimed through the API (a lease: nobody else is shown
// it while it lasts), decided from the keyboard.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const app = document.getElementById("review-app");
  if (!app) return;
  const actor = app.dataset.actor;
  const panelUrl = (id) => app.dataset.panelUrl.replace("/0/", `/${id}/`);
  const $ = (id) => document.getElementById(id);
  const box = $("review-item"), queueState = $("queue-state"), flash = $("flash");
  const picker = $("reject-picker"), editor = $("editor"), regenerator = $("regenerate-picker");
  let item = null, busy = false, countdown = null, emptyPoll = null;
  const skipped = new Set();
  const passedOver = new Set();  // approved by this reviewer already; never shown again here

  const say = (text, kind = "info") => { flash.textContent = text; flash.className = `flash ${kind}`; };

  // When the lease ends, as a clock time in the page's language ("14:32"), in the bar and in the editor.
  const clock = (time) => time.toLocaleTimeString(document.documentElement.lang || undefined, { hour: "2-digit", minute: "2-digit" });

  function startCountdown(expiresAt) {
    clearInterval(countdown);
    const lease = $("lease"), left = $("lease-left"), inEditor = $("edit-lease");
    lease.hidden = $("lease-extend").hidden = !expiresAt;
    if (!expiresAt) return;
    const end = new Date(expiresAt).getTime();
    const until = clock(new Date(end));
    lease.querySelector(".lease-end").textContent = Atelier.t("lease_until", "until %(time)s").replace("%(time)s", until);
    inEditor.querySelector(".lease-end").textContent = until;
    const paint = () => {
      const seconds = Math.max(0, Math.round((end - Date.now()) / 1000));
      left.textContent = `${String(Math.floor(seconds / 60)).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;
      $("edit-lease-left").textContent = left.textContent;  // the editor covers the bar: it counts down too
      for (const shown of [lease, inEditor]) {
        shown.classList.toggle("warn", seconds < 60);
        shown.classList.toggle("expired", seconds === 0);
      }
      if (seconds === 0) { clearInterval(countdown); say(Atelier.t("lease_over", "Your lease ran out."), "error"); }
    };
    paint();
    countdown = setInterval(paint, 1000);
  }

  // Extending asks the API to renew the lease: the item stays this reviewer's for a whole lease from now, and
  // nobody else is shown it meanwhile. It is refused once another reviewer took the item after it lapsed.
  async function extendLease() {
    if (!item) return;
    const shown = item;
    const result = await Atelier.api(`reviews/${shown.id}/renew/`, { method: "POST" });
    if (item !== shown) return;  // decided or skipped meanwhile
    if (!result.ok) {
      const refusal = Atelier.errorText(result);
      if (!editor.hidden) { $("edit-error").textContent = refusal; delete $("edit-error").dataset.about; }
      say(refusal, "error");
      return;
    }
    item.lease_expires_at = result.data.lease_expires_at;
    startCountdown(item.lease_expires_at);
    say(Atelier.t("lease_extended", "Lease extended: yours until %(time)s.").replace("%(time)s", clock(new Date(item.lease_expires_at))), "ok");
  }
  document.querySelectorAll("button.extend-lease").forEach((button) => button.addEventListener("click", extendLease));

  async function show(claimed) {
    clearTimeout(emptyPoll);
    item = claimed;
    if (!item) {
      startCountdown(null);
      box.dataset.item = "";
      const mine = [...skipped].filter((id) => !passedOver.has(id)).length;
      const message = mine ? Atelier.t("empty_skipped", "Nothing else to review.").replace("%(n)s", mine) : Atelier.t("empty", "Nothing to review.");
      box.innerHTML = "";
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.id = "queue-empty";
      empty.textContent = message;
      box.appendChild(empty);
      queueState.textContent = Atelier.t("queue_empty", "Queue empty");
      emptyPoll = setTimeout(() => next(), 5000);
      return;
    }
    const response = await fetch(panelUrl(item.id), { credentials: "same-origin" });
    box.innerHTML = await response.text();
    box.dataset.item = String(item.id);
    queueState.textContent = `${Atelier.t("item", "Item")} ${item.id}`;
    startCountdown(item.lease_expires_at);
  }

  // An item this reviewer already approved waits for someone else (the second-reviewer rule):
  // hand it back at once and pass over it.
  async function passOver(claimed) {
    skipped.add(claimed.id);
    passedOver.add(claimed.id);
    await Atelier.api(`reviews/${claimed.id}/release/`, { method: "POST" });
  }

  // The next item nobody else holds: claim-next, or (after skips) the first pending item not skipped.
  async function claimNext() {
    if (!skipped.size) {
      const result = await Atelier.api("reviews/claim-next/", { method: "POST" });
      if (!result.ok) throw new Error(Atelier.errorText(result));
      if (result.status === 204) return null;
      if (!result.data.approvals.includes(actor)) return result.data;
      await passOver(result.data);
    }
    const listed = await Atelier.api("reviews/?state=pending&page_size=200");
    if (!listed.ok) throw new Error(Atelier.errorText(listed));
    const now = Date.now();
    for (const candidate of listed.data.results) {
      if (skipped.has(candidate.id) || candidate.approvals.includes(actor)) continue;
      if (candidate.lease_holder && candidate.lease_holder !== actor && new Date(candidate.lease_expires_at).getTime() > now) continue;
      const claimed = await Atelier.api(`reviews/${candidate.id}/claim/`, { method: "POST" });
      if (claimed.ok) return claimed.data;
    }
    return null;
  }

  async function next() {
    if (busy) return;
    busy = true;
    try { await show(await claimNext()); } catch (e) { say(`${Atelier.t("load_failed", "Could not load the next item:")} ${e.message}`, "error"); }
    finally { busy = false; }
  }

  async function decide(body, done) {
    if (!item || busy) return;
    busy = true;
    const result = await Atelier.api(`reviews/${item.id}/decision/`, { method: "POST", body });
    busy = false;
    if (!result.ok) { say(Atelier.errorText(result), "error"); return false; }
    say(result.data.state === "open" ? Atelier.t("second_needed", "Recorded; a second reviewer must confirm.") : done, "ok");
    await next();
    return true;
  }

  async function skip() {
    if (!item || busy) { await next(); return; }
    skipped.add(item.id);
    await Atelier.api(`reviews/${item.id}/release/`, { method: "POST" });
    say(Atelier.t("skipped", "Skipped."), "info");
    item = null;
    await next();
  }

  // The overlays are modal dialogs (WAI-ARIA's dialog pattern): the focus goes into one when it opens,
  // Tab and Shift+Tab go round its controls and never reach the page under it, and when it closes
  // (Esc, a decision, a click beside it, its Cancel button) the focus goes back to where it was: the
  // legend's button, or the page.
  const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), " +
    "textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";
  let openDialog = null, returnFocus = null;
  const focusables = (overlay) => [...overlay.querySelectorAll(FOCUSABLE)].filter((e) => e.getClientRects().length);

  function openOverlay(overlay, first) {
    if (!openDialog) returnFocus = document.activeElement;
    picker.hidden = editor.hidden = regenerator.hidden = true;
    overlay.hidden = false;
    openDialog = overlay;
    (first || focusables(overlay)[0])?.focus();
  }
  function closeOverlays() {
    const wasOpen = openDialog;
    picker.hidden = true; editor.hidden = true; regenerator.hidden = true;
    openDialog = null;
    if (!wasOpen) return;
    const back = returnFocus;
    returnFocus = null;
    if (back && back !== document.body && back.isConnected && back.getClientRects().length) back.focus();
    else if (wasOpen.contains(document.activeElement)) document.activeElement.blur();
  }
  // Tab from the last control goes to the first, Shift+Tab from the first to the last; from outside
  // the dialog (a click on its text left the focus on the page), into it.
  function keepFocusInside(event) {
    const inside = focusables(openDialog);
    event.preventDefault();
    if (!inside.length) return;
    const at = inside.indexOf(document.activeElement);
    const step = event.shiftKey ? -1 : 1;
    const next = at === -1 ? (event.shiftKey ? inside.length - 1 : 0) : (at + step + inside.length) % inside.length;
    inside[next].focus();
  }
  document.addEventListener("focusin", (event) => {
    if (openDialog && !openDialog.contains(event.target)) focusables(openDialog)[0]?.focus();
  });
  // A click or a tap beside the dialog, on the shade round it, closes it as Esc does; only one pressed and
  // let go there: a selection in the dialog's text dragged out beyond it ends with a click on the shade too
  // (the click goes to what holds both ends), and must not throw away what was typed.
  function closeOnClickBeside(overlay) {
    let beside = false;
    overlay.addEventListener("pointerdown", (event) => { beside = event.target === overlay; });
    overlay.addEventListener("pointerup", (event) => { beside = beside && event.target === overlay; });
    overlay.addEventListener("click", (event) => {
      if (event.target === overlay && beside) closeOverlays();
      beside = false;
    });
  }
  [picker, regenerator, editor].forEach(closeOnClickBeside);

  // The focus goes into the picker (a number still picks a reason; Tab reaches the comment), not left on the page under it.
  function openPicker() {
    if (!item) return;
    $("reject-comment").value = "";
    openOverlay(picker, picker.querySelector("button[data-reason]"));
  }

  // Regenerate: the output is rejected and the job is run again with a new seed; the note (what
  // to do better) goes with the decision and onto the new job.
  function openRegenerate() {
    if (!item) return;
    $("regenerate-note").value = "";
    $("regenerate-error").textContent = "";
    openOverlay(regenerator, $("regenerate-note"));
  }

  async function regenerate() {
    if (!item || busy) return;
    busy = true;
    const comment = $("regenerate-note").value.trim();
    const result = await Atelier.api(`reviews/${item.id}/decision/`, { method: "POST", body: { action: "regenerate", comment } });
    busy = false;
    if (!result.ok) { $("regenerate-error").textContent = Atelier.errorText(result); return; }
    closeOverlays();
    const decision = [...(result.data.decisions || [])].reverse().find((d) => d.action === "regenerate");
    say(Atelier.t("regenerated", "Sent back: a new job is generating."), "ok");
    if (decision && decision.regenerated_job) {
      const link = document.createElement("a");
      link.href = app.dataset.jobUrl.replace("00000000-0000-0000-0000-000000000000", decision.regenerated_job);
      link.id = "regenerated-job";
      link.textContent = Atelier.t("see_new_job", "See the new job");
      flash.append(" ", link);
    }
    await next();
  }
  $("regenerate-send").addEventListener("click", regenerate);
  // Cancel leaves it as Esc and a click beside it do: nothing sent, the focus back where it was.
  $("regenerate-cancel").addEventListener("click", closeOverlays);

  async function reject(reason) {
    const comment = $("reject-comment").value;
    closeOverlays();
    // the reason as its button names it (a default reason in the page's language), the code as the API takes it
    const button = [...picker.querySelectorAll("button[data-reason]")].find((b) => b.dataset.reason === reason);
    const label = (button && button.dataset.label) || reason;
    await decide({ action: "reject", reason, comment }, `${Atelier.t("rejected", "Rejected")} (${label}).`);
  }

  function openEditor() {
    if (!item) return;
    const source = document.getElementById("item-content");
    $("edit-content").value = JSON.stringify(source ? JSON.parse(source.textContent) : item.output.content, null, 2);
    // What the plugin lets a reviewer change (the text); the rest records the run and must come back as it is.
    const fields = document.getElementById("item-editable");
    const editable = fields ? JSON.parse(fields.textContent) : null;
    $("edit-fields").textContent = !editable ? "" : editable.length
      ? Atelier.t("editable_fields", "You may change %(fields)s.").replace("%(fields)s", editable.join(", "))
      : Atelier.t("nothing_editable", "Nothing in this output can be edited.");
    $("edit-error").textContent = "";
    delete $("edit-error").dataset.about;
    openOverlay(editor, $("edit-content"));
  }

  // A change to fields the plugin records about the run is named in the page's language, as paths of the text
  // in the editor (the API's details name them from the request: content.usage.prompt_tokens).
  function editRefusal(result) {
    const refusal = result.data && result.data.error;
    if (!refusal || refusal.code !== "field_not_editable" || !refusal.details) return Atelier.errorText(result);
    const fields = Object.keys(refusal.details).map((path) => path.replace(/^content\./, ""));
    return Atelier.t("not_editable", "Not saved: these fields cannot be edited: %(fields)s").replace("%(fields)s", fields.join(", "));
  }

  async function saveEdit() {
    if (!item || busy) return;  // a second Ctrl+Enter (or click) while the first is on its way
    const error = $("edit-error");
    let content;
    try { content = JSON.parse($("edit-content").value); } catch (e) {
      error.textContent = `${Atelier.t("bad_json", "Not valid JSON:")} ${e.message}`;
      error.dataset.about = "text";
      return;
    }
    busy = true;
    const result = await Atelier.api(`reviews/${item.id}/decision/`, { method: "POST", body: { action: "edit", content } });
    busy = false;
    if (!result.ok) { error.textContent = editRefusal(result); delete error.dataset.about; return; }
    closeOverlays();
    say(Atelier.t("edited", "Edited and approved."), "ok");
    await next();
  }
  // The dialog's button saves as Ctrl+Enter does: for a mouse or a touch screen, and Tab reaches it.
  $("edit-save").addEventListener("click", saveEdit);
  // Cancel leaves it as Esc and a click beside it do: no decision, the focus back where it was (a touch
  // screen has no Esc key).
  $("edit-cancel").addEventListener("click", closeOverlays);
  // An error about the text is about the text before a change: it goes once the text changes, and a save
  // checks the text again. (An answer of the server, a lease run out, say, stays until the next save.)
  $("edit-content").addEventListener("input", () => {
    const error = $("edit-error");
    if (error.dataset.about === "text") { error.textContent = ""; delete error.dataset.about; }
  });

  picker.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-reason]");
    if (button) reject(button.dataset.reason);
  });

  async function bulkApprove(button) {
    if (!window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    let result = null;
    try {
      const response = await fetch(button.dataset.url, {
        method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": Atelier.meta("csrf-token") },
      });
      if (response.ok) result = await response.json();
      else say(`HTTP ${response.status}`, "error");
    } catch (e) {
      say(Atelier.errorText({ status: 0 }), "error");
    }
    if (!result) { button.disabled = false; return; }  // nothing approved: the person may try again
    say(`${Atelier.t("bulk_done", "Approved:")} ${result.approved}`, "ok");
    button.closest(".bulk").hidden = true;
    item = null;
    await next();
  }

  // The legend's buttons do what their keys do (for a mouse, or a touch screen). One that opens a
  // dialog keeps the focus, for the dialog to give it back when it closes.
  const press = (key) => document.dispatchEvent(new KeyboardEvent("keydown", { key }));
  document.querySelectorAll("#shortcut-legend button[data-key]").forEach((button) =>
    button.addEventListener("click", () => {
      if (!["r", "e", "g"].includes(button.dataset.key)) button.blur();
      press(button.dataset.key);
    }));
  const bulk = $("bulk-approve");
  if (bulk) bulk.addEventListener("click", () => bulkApprove(bulk));

  document.addEventListener("keydown", (event) => {
    if (Atelier.composing(event)) return;  // keys that build a word in an input method are the IME's
    if (event.key === "Tab" && openDialog) { keepFocusInside(event); return; }
    // Ctrl+Enter saves, and Cmd+Enter (a Mac's), on every platform: the button's aria-keyshortcuts names both,
    // the hint under it the one of the person's platform (app.js).
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && !editor.hidden) { event.preventDefault(); saveEdit(); return; }
    // Enter regenerates from the note; on a focused button it presses that button (Cancel must not send it).
    if (event.key === "Enter" && !event.shiftKey && !regenerator.hidden && document.activeElement?.tagName !== "BUTTON") {
      event.preventDefault(); regenerate(); return;
    }
    if (event.key === "Escape") { closeOverlays(); return; }
    if (!picker.hidden) {
      if (document.activeElement === $("reject-comment")) return;  // a digit typed in the comment is text
      const buttons = picker.querySelectorAll("button[data-reason]");
      const index = Number.parseInt(event.key, 10);
      if (index >= 1 && index <= buttons.length) { event.preventDefault(); reject(buttons[index - 1].dataset.reason); }
      return;
    }
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
    if (typing || event.ctrlKey || event.metaKey || event.altKey || !editor.hidden || !regenerator.hidden) return;
    const actions = {
      a: () => decide({ action: "approve" }, Atelier.t("approved", "Approved.")),
      r: openPicker,
      e: openEditor,
      g: openRegenerate,
      s: skip,
      n: () => { if (!item) { skipped.clear(); passedOver.forEach((id) => skipped.add(id)); } next(); },
    };
    const run = actions[event.key.toLowerCase()];
    if (run) { event.preventDefault(); run(); }
  });

  next();
});
