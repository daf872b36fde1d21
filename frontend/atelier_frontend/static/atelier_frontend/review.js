// The review queue: one item at a time, claimed through the API (a lease: nobody else is shown
// it while it lasts), decided from the keyboard.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const app = document.getElementById("review-app");
  if (!app) return;
  const actor = app.dataset.actor;
  // the queue's filters (plugin, flagged), as the page was asked for them: what claim-next and the list take
  const filters = app.dataset.filters ? `&${app.dataset.filters}` : "";
  const panelUrl = (id) => app.dataset.panelUrl.replace("/0/", `/${id}/`);
  const $ = (id) => document.getElementById(id);
  const box = $("review-item"), queueState = $("queue-state"), flash = $("flash");
  const picker = $("reject-picker"), editor = $("editor"), regenerator = $("regenerate-picker");
  let item = null, busy = false, countdown = null, emptyPoll = null;
  const passedOver = new Set();  // approved by this reviewer already; never shown again here

  // The items this reviewer skipped, oldest skip first: each is shown again only once nothing else is left (a skip
  // puts it at the back, never out of reach). They are kept in the tab's sessionStorage, not on the server: a
  // reload, or a visit to another page and back in the tab, still has them for the rest of the working session,
  // and they end with the tab; nothing is written where another reviewer's queue reads, so a skip hides nothing
  // from anyone else (the item itself is handed back at once). Per project and reviewer (another person signed in
  // in the tab starts afresh), and at most SKIPS_KEPT of them: the oldest skip is forgotten first, and ids the
  // whole queue no longer lists (decided) are dropped whenever it is listed.
  const SKIPS_KEPT = 200;
  const skipped = (() => {
    const key = `atelier.review.skipped:${Atelier.meta("atelier-project")}:${actor}`;
    let ids = [];
    try { ids = JSON.parse(sessionStorage.getItem(key) || "[]").filter(Number.isInteger); } catch (e) { ids = []; }
    const save = () => { try { sessionStorage.setItem(key, JSON.stringify(ids)); } catch (e) { /* kept for this page only */ } };
    return {
      has: (id) => ids.includes(id),
      get size() { return ids.length; },
      rank: (id) => ids.indexOf(id),
      add(id) { ids = [...ids.filter((kept) => kept !== id), id].slice(-SKIPS_KEPT); save(); },
      remove(id) { if (ids.includes(id)) { ids = ids.filter((kept) => kept !== id); save(); } },
      keepOnly(pending) { const before = ids.length; ids = ids.filter((id) => pending.has(id)); if (ids.length !== before) save(); },
    };
  })();

  const say = (text, kind = "info") => { flash.textContent = text; flash.className = `flash ${kind}`; };

  // The review service's refusals in the page's language and in a reviewer's terms: the API's own messages are
  // English and written for programs ("claim it with POST .../claim/"). ``renewing``: the refusal of an extension.
  function refusal(result, { renewing = false } = {}) {
    const code = result.data && result.data.error && result.data.error.code;
    if (code === "lease_required") {
      return renewing
        ? Atelier.t("lease_taken", "Another reviewer took this item after your lease ran out: press n for the next one.")
        : Atelier.t("lease_lapsed", "Not saved: your lease on this item ran out. Extend the lease to keep it, or press n for the next one.");
    }
    if (code === "review_decided") return Atelier.t("already_decided", "This item was already decided: press n for the next one.");
    if (code === "content_erased") return Atelier.t("content_erased", "This item's content was erased: there is nothing left to review. Press n for the next one.");
    if (code === "own_content") return Atelier.t("own_content", "You submitted this job: another reviewer must approve it. You may reject it or regenerate it.");
    return Atelier.errorText(result);
  }

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
      const refused = refusal(result, { renewing: true });
      if (!editor.hidden) { $("edit-error").textContent = refused; delete $("edit-error").dataset.about; }
      say(refused, "error");
      return;
    }
    item.lease_expires_at = result.data.lease_expires_at;
    startCountdown(item.lease_expires_at);
    say(Atelier.t("lease_extended", "Lease extended: yours until %(time)s.").replace("%(time)s", clock(new Date(item.lease_expires_at))), "ok");
  }
  document.querySelectorAll("button.extend-lease").forEach((button) => button.addEventListener("click", extendLease));

  // Gives an item back: only the lease this page holds on it (the one it was claimed or last renewed with). The same
  // reviewer's other page (a reload, another language) may hold the item again, with a later lease, and keeps it:
  // this page's request may land after that claim (a panel fetch cut off by the page going away said "failed").
  const giveBack = (held, options = {}) => Atelier.api(
    `reviews/${held.id}/release/?lease_expires_at=${encodeURIComponent(held.lease_expires_at)}`, { method: "POST", ...options });

  async function show(claimed) {
    clearTimeout(emptyPoll);
    // Nothing is decided until its panel is on the screen: the keys decide ``item``, and while it named the claimed
    // item over the panel of the one before (already decided), a panel that did not load had "a" approve an item
    // nobody had seen.
    item = null;
    if (!claimed) {
      startCountdown(null);
      box.dataset.item = "";
      const message = filters ? Atelier.t("empty_filtered", "Nothing to review with these filters.") : Atelier.t("empty", "Nothing to review.");
      box.innerHTML = "";
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.id = "queue-empty";
      empty.textContent = message;
      box.appendChild(empty);
      queueState.textContent = Atelier.t("queue_empty", "Queue empty");
      refreshStanding();  // "Queue empty", or how many wait that others hold
      emptyPoll = setTimeout(() => next(), 5000);
      return;
    }
    let panel = null, failure = Atelier.errorText({ status: 0 });
    try {
      const response = await fetch(panelUrl(claimed.id), { credentials: "same-origin" });
      // signed out meanwhile: the answer is the login page, which belongs in the window, not in the panel
      if (response.redirected) { window.location.reload(); return; }
      if (response.ok) panel = await response.text();
      else failure = `HTTP ${response.status}`;
    } catch (e) { /* offline: said below */ }
    if (panel === null) {
      // The item before must not stay on the screen as if it were this one: clear it, and hand the claimed item
      // back for whoever is next (n here too).
      startCountdown(null);
      box.dataset.item = "";
      box.innerHTML = "";
      const retry = document.createElement("p");
      retry.className = "empty";
      retry.id = "queue-retry";
      retry.textContent = Atelier.t("press_n_to_retry", "Press n to try again.");
      box.appendChild(retry);
      queueState.textContent = "";
      giveBack(claimed);
      throw new Error(failure);
    }
    box.innerHTML = panel;
    item = claimed;
    box.dataset.item = String(item.id);
    startCountdown(item.lease_expires_at);
    refreshStanding();
  }

  // Where the queue stands, as the server counts it now (the header's "3 of 28 pending items", the bulk button's
  // count): asked for with each item shown, and every few seconds for what others decide and what arrives. Only the
  // latest answer counts: an earlier one may come last, about an item gone since.
  const bulk = $("bulk-approve");
  let standingAsked = 0;
  async function refreshStanding() {
    const asked = ++standingAsked;
    const query = new URLSearchParams(app.dataset.filters);
    if (item) query.set("item", item.id);
    if (bulk) query.set("counted_at", bulk.dataset.countedAt);
    let standing = null;
    try {
      const response = await fetch(`${app.dataset.standingUrl}?${query}`, { credentials: "same-origin" });
      if (response.ok && !response.redirected) standing = await response.json();
    } catch (e) { /* offline for a moment: the next refresh tries again */ }
    if (!standing || asked !== standingAsked) return;
    queueState.textContent = standing.header;
    if (bulk && standing.bulk) {
      // the items the page counted that are still there to approve: the decisions made since are not among them
      bulk.textContent = standing.bulk.label;
      bulk.dataset.confirm = standing.bulk.confirm;
      bulk.closest(".bulk").hidden = standing.bulk.count === 0;
    }
  }
  // (an empty queue looks again every few seconds, and refreshes it as it does)
  setInterval(() => { if (item && document.visibilityState === "visible" && !busy) refreshStanding(); }, 5000);

  // An item this reviewer already approved waits for someone else (the second-reviewer rule):
  // hand it back at once and pass over it.
  async function passOver(claimed) {
    passedOver.add(claimed.id);
    await giveBack(claimed);
  }

  // The next item nobody else holds: claim-next, or (after skips) the first pending item not skipped, and once
  // there is none, the skipped ones, the one skipped longest ago first.
  async function claimNext() {
    if (!skipped.size && !passedOver.size) {
      const result = await Atelier.api(`reviews/claim-next/?${filters.slice(1)}`, { method: "POST" });
      if (!result.ok) throw new Error(Atelier.errorText(result));
      if (result.status === 204) return null;
      if (!result.data.approvals.includes(actor)) return result.data;
      await passOver(result.data);
    }
    const listed = await Atelier.api(`reviews/?state=pending&page_size=200${filters}`);
    if (!listed.ok) throw new Error(Atelier.errorText(listed));
    const pending = listed.data.results;
    // the whole queue listed: a skipped item it does not list was decided, and is forgotten
    if (!filters && !listed.data.next) skipped.keepOnly(new Set(pending.map((candidate) => candidate.id)));
    const now = Date.now();
    const free = pending.filter((candidate) => !passedOver.has(candidate.id) && !candidate.approvals.includes(actor)
      && !(candidate.lease_holder && candidate.lease_holder !== actor && new Date(candidate.lease_expires_at).getTime() > now));
    const backOfTheQueue = free.filter((candidate) => skipped.has(candidate.id)).sort((a, b) => skipped.rank(a.id) - skipped.rank(b.id));
    for (const candidate of [...free.filter((candidate) => !skipped.has(candidate.id)), ...backOfTheQueue]) {
      const claimed = await Atelier.api(`reviews/${candidate.id}/claim/`, { method: "POST" });
      if (claimed.ok) return claimed.data;
    }
    return null;
  }

  async function next() {
    if (busy) return;
    busy = true;
    try {
      const claimed = await claimNext();
      await show(claimed);
      if (claimed && skipped.has(claimed.id)) say(Atelier.t("skipped_again", "Nothing else is left: back to the items you skipped."), "info");
    } catch (e) { say(`${Atelier.t("load_failed", "Could not load the next item:")} ${e.message}`, "error"); }
    finally { busy = false; }
  }

  // ``errorBox``: where the open dialog says a refusal (the flash is under its shade); it stays open, with what
  // was typed in it, to send again.
  async function decide(body, done, errorBox = null) {
    if (!item || busy) return false;
    busy = true;
    const result = await Atelier.api(`reviews/${item.id}/decision/`, { method: "POST", body });
    busy = false;
    if (!result.ok) {
      const refused = refusal(result);
      say(refused, "error");
      if (errorBox) errorBox.textContent = refused;
      return false;
    }
    skipped.remove(item.id);
    closeOverlays();
    say(result.data.state === "open" ? Atelier.t("second_needed", "Recorded; a second reviewer must confirm.") : done, "ok");
    await next();
    return true;
  }

  async function skip() {
    if (!item || busy) { await next(); return; }
    skipped.add(item.id);
    await giveBack(item);
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
  // The comment is kept for the item it was written about: reopened after Esc or a refused rejection, it is still there.
  let commentFor = null;
  function openPicker() {
    if (!item) return;
    if (commentFor !== item.id) $("reject-comment").value = "";
    commentFor = item.id;
    $("reject-error").textContent = "";
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
    if (!result.ok) { $("regenerate-error").textContent = refusal(result); return; }
    skipped.remove(item.id);
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
  $("reject-cancel").addEventListener("click", closeOverlays);

  // The picker stays open until the rejection is taken: refused (the connection dropped, the lease ran out), the
  // reason and the comment are still there to send again.
  async function reject(reason) {
    const comment = $("reject-comment").value;
    // the reason as its button names it (a default reason in the page's language), the code as the API takes it
    const button = [...picker.querySelectorAll("button[data-reason]")].find((b) => b.dataset.reason === reason);
    const label = (button && button.dataset.label) || reason;
    $("reject-error").textContent = "";
    await decide({ action: "reject", reason, comment }, `${Atelier.t("rejected", "Rejected")} (${label}).`, $("reject-error"));
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
    const error = result.data && result.data.error;
    if (!error || error.code !== "field_not_editable" || !error.details) return refusal(result);
    const fields = Object.keys(error.details).map((path) => path.replace(/^content\./, ""));
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
    skipped.remove(item.id);
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
      // when the page counted the items the question names: the server approves none that arrived after
      const response = await fetch(button.dataset.url, {
        method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": Atelier.meta("csrf-token") },
        body: new URLSearchParams({ counted_at: button.dataset.countedAt }),
      });
      if (response.ok) result = await response.json();
      else say(`HTTP ${response.status}`, "error");
    } catch (e) {
      say(Atelier.errorText({ status: 0 }), "error");
    }
    if (!result) { button.disabled = false; return; }  // nothing approved: the person may try again
    // the server says it in the page's words: how many were approved, and how many of those counted are left
    say(result.message || `${Atelier.t("bulk_done", "Approved:")} ${result.approved}`, "ok");
    // gone until the standing says some of the items counted are left (more than one click approves, or held
    // by another reviewer then); it can be pressed again then
    button.closest(".bulk").hidden = true;
    button.disabled = false;
    item = null;
    await next();
  }

  // The legend's buttons do what their keys do (for a mouse, or a touch screen). One that opens a
  // dialog keeps the focus, for the dialog to give it back when it closes. The second click of a double click
  // (or tap) presses nothing: it came when the next item was on the screen, and approved it unseen.
  const press = (key) => document.dispatchEvent(new KeyboardEvent("keydown", { key }));
  document.querySelectorAll("#shortcut-legend button[data-key]").forEach((button) =>
    button.addEventListener("click", (event) => {
      if (event.detail > 1) return;
      if (!["r", "e", "g"].includes(button.dataset.key)) button.blur();
      press(button.dataset.key);
    }));
  if (bulk) bulk.addEventListener("click", () => bulkApprove(bulk));

  // Leaving the page (another page, a closed tab, a reload) gives the item on the screen back to the queue at once:
  // its lease kept it from every other reviewer for the policy's lease time (600 s by default) with nobody on it.
  // Only the lease this page holds: the reviewer's next page (a reload, another language) may have claimed the
  // item again already, and that lease stays.
  window.addEventListener("pagehide", () => { if (item) giveBack(item, { keepalive: true }); });
  // Back to this page from the browser's cache: the item on the screen was given back when it was left.
  window.addEventListener("pageshow", (event) => { if (event.persisted) window.location.reload(); });

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
      // n moves on: from an item, to the next one (claim-next would hand back the item one holds: n did nothing);
      // from an empty queue, it looks again (the skipped items come back by themselves once nothing else is left).
      n: () => {
        if (item) { skip(); return; }
        next();
      },
    };
    const run = actions[event.key.toLowerCase()];
    if (!run) return;
    event.preventDefault();
    // A key held down repeats: each repeat decided the item shown next, one after another, unseen.
    if (!event.repeat) run();
  });

  next();
});
