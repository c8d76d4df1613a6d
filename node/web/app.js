// jangbu web page: parcel tracking, meat traceability, explorer. Vanilla JS, no build step.
//
// Safety rules of this file: data from the ledger only ever reaches the page as text
// (textContent / createTextNode through el()), never through innerHTML; links are built
// from fixed path prefixes plus encodeURIComponent. Each view first projects the API answer
// onto the few public fields it shows (publicParcel, publicTrace): personal data such as a
// buyer's sealed record or reference never reaches the DOM.
"use strict";
(function () {
  const I18N = window.JANGBU_I18N || { en: {} };
  const LANG_KEY = "jangbu.lang";
  const LANGS = ["en", "ko"];
  const app = document.getElementById("app");
  let lang = chooseLanguage();
  let redraw = null; // redraws the current view from cached data (language switch)
  let cleanups = []; // closes event streams and timers of the current view
  let viewToken = 0; // guards against a slow answer drawing over a newer view

  // --- language -------------------------------------------------------------------------

  function chooseLanguage() {
    const asked = new URLSearchParams(location.search).get("lang");
    if (LANGS.includes(asked)) {
      remember(asked);
      return asked;
    }
    let stored = null;
    try { stored = localStorage.getItem(LANG_KEY); } catch (e) { stored = null; }
    if (LANGS.includes(stored)) return stored;
    if (document.documentElement.dataset.defaultLang === "ko") return "ko"; // Accept-Language
    const nav = (navigator.languages && navigator.languages[0]) || navigator.language || "";
    return nav.toLowerCase().startsWith("ko") ? "ko" : "en";
  }

  function remember(value) {
    try { localStorage.setItem(LANG_KEY, value); } catch (e) { /* private mode: fine */ }
  }

  function t(key, vars) {
    let text = (I18N[lang] && I18N[lang][key]) || I18N.en[key];
    if (text === undefined) text = key;
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, (whole, name) =>
        Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole);
    }
    return text;
  }

  function has(key) { return Boolean((I18N[lang] && I18N[lang][key]) || I18N.en[key]); }

  function applyStaticText() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    const toggle = document.getElementById("lang-toggle");
    if (toggle) toggle.textContent = t("lang_other");
  }

  function switchLanguage() {
    lang = lang === "ko" ? "en" : "ko";
    remember(lang);
    const url = new URL(location.href);
    if (url.searchParams.has("lang")) {
      url.searchParams.delete("lang");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    applyStaticText();
    if (redraw) redraw();
  }

  // --- DOM helpers (text only) ------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    add(node, children);
    return node;
  }

  function add(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function show(build) {
    redraw = () => {
      const fragment = document.createDocumentFragment();
      add(fragment, [build()]);
      app.replaceChildren(fragment);
    };
    redraw();
  }

  function dl(rows) {
    const list = el("dl", { class: "facts" });
    for (const [label, value, cls] of rows) {
      if (value === null || value === undefined || value === "") continue;
      list.append(el("dt", {}, label), el("dd", { class: cls || null }, value));
    }
    return list;
  }

  function table(headers, rows, cls) {
    return el("table", { class: cls || null },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows));
  }

  function setTitle(text) { document.title = `${text} · jangbu 장부`; }

  function fmtTime(ms, withSeconds) {
    if (ms === null || ms === undefined) return "";
    const options = { timeZone: "Asia/Seoul", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (withSeconds) options.second = "2-digit";
    try {
      return new Intl.DateTimeFormat(lang === "ko" ? "ko-KR" : "en-CA", options)
        .format(new Date(ms));
    } catch (e) {
      return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    }
  }

  function fmtNumber(n) { return Number(n).toLocaleString(lang === "ko" ? "ko-KR" : "en-US"); }

  function fmtKg(grams) {
    if (grams === null || grams === undefined) return null;
    return `${(grams / 1000).toLocaleString(lang === "ko" ? "ko-KR" : "en-US",
      { maximumFractionDigits: 3 })} kg`;
  }

  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return t("ago_s", { n: s });
    if (s < 3600) return t("ago_m", { n: Math.floor(s / 60) });
    return t("ago_h", { n: Math.floor(s / 3600) });
  }

  function short(hex, n) { return hex ? `${hex.slice(0, n || 10)}…` : ""; }

  // --- API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" } });
    } catch (e) {
      throw new ApiError(0, "E_NETWORK", t("error_network"));
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new ApiError(response.status, (body && body.code) || "E_HTTP",
        (body && body.message) || response.statusText);
    }
    return body;
  }

  async function query(contract, name, args) {
    const q = encodeURIComponent(JSON.stringify(args));
    return (await api(`/v1/query/${contract}/${name}?args=${q}`)).result;
  }

  let orgNames = null; // org id -> display name, from the membership contract
  async function loadOrgNames() {
    if (orgNames) return orgNames;
    try {
      const orgs = await query("membership", "orgs", {});
      orgNames = Object.fromEntries(orgs.map((o) => [String(o.id), String(o.name || o.id)]));
    } catch (e) {
      orgNames = {};
    }
    return orgNames;
  }

  function orgName(id) {
    if (!id) return "";
    if (id === "clearance" || id === "livestock") return t("by_ledger");
    const name = orgNames && orgNames[id];
    return name && name !== id ? `${name} (${id})` : String(id);
  }

  // A contract this ledger does not run is not "not found" (review: a trace on a customs
  // node said no animal was on the ledger).
  function isMissing(error) {
    return (error.status === 404 || error.status === 400) && error.code !== "E_UNKNOWN_CONTRACT";
  }

  function showError(error, notFoundText) {
    const text = error.code === "E_NETWORK" ? t("error_network")
      : error.code === "E_UNKNOWN_CONTRACT" ? t("error_no_contract")
      : isMissing(error) && notFoundText ? notFoundText()
        : t("error_generic", { msg: `${error.code}: ${error.message}` });
    show(() => el("section", { class: "card error", role: "alert", id: "error" },
      el("p", {}, text), el("p", {}, el("a", { href: "/" }, t("nav_search")))));
  }

  function showLoading() {
    redraw = null;
    app.replaceChildren(el("p", { class: "loading" }, t("loading")));
  }

  // --- search -----------------------------------------------------------------------------

  function searchForm(kind) {
    const input = el("input", { id: `${kind}-input`, name: "q", type: "search",
      autocomplete: "off", spellcheck: "false", required: true,
      placeholder: t(`${kind}_placeholder`) });
    const message = el("p", { class: "form-message", "aria-live": "polite" });
    const form = el("form", { id: `${kind}-form`, class: "search", action: `/${kind}`,
      method: "get", role: "search" },
      el("label", { for: `${kind}-input` }, t(`${kind}_label`)),
      el("div", { class: "row" }, input,
        el("button", { type: "submit" }, t(`${kind}_button`))),
      message);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) {
        message.textContent = t("empty_input");
        return;
      }
      navigate(`/${kind}/${encodeURIComponent(value)}`);
    });
    return form;
  }

  function viewSearch() {
    setTitle(t("search_title"));
    show(() => [
      el("section", { class: "intro" }, el("h1", {}, t("search_title")),
        el("p", { class: "muted" }, t("search_intro"))),
      el("div", { class: "grid" },
        el("section", { class: "card" }, el("h2", {}, t("track_heading")), searchForm("track")),
        el("section", { class: "card" }, el("h2", {}, t("trace_heading")), searchForm("trace"))),
      el("section", { class: "card slim" }, el("h2", {}, t("explorer_heading")),
        el("p", {}, t("explorer_intro"), " ", el("a", { href: "/explorer" }, t("explorer_link")))),
    ]);
  }

  // --- parcel tracking --------------------------------------------------------------------

  const MILESTONES = [
    ["ordered", ["ORDERED"]],
    ["screened", ["SCREENED"]],
    ["shipped", ["SHIPPED"]],
    ["declared", ["DECLARED", "ARRIVED"]],
    ["inspected", ["UNDER_INSPECTION", "HELD"]],
    ["released", ["RELEASED", "DUTY_PAID"]],
    ["delivered", ["OUT_FOR_DELIVERY", "DELIVERED", "RECEIVED"]],
  ];
  const STOPPED = ["CANCELLED", "SEIZED", "RETURNED"];
  const IN_PROGRESS = ["UNDER_INSPECTION", "HELD", "OUT_FOR_DELIVERY"];
  const DETAIL_FIELDS = ["result", "type", "port", "origin", "waybill", "reason", "note",
    "documents", "amount_krw", "code"];

  function publicDetail(detail) {
    const out = {};
    if (!detail || typeof detail !== "object") return out;
    for (const name of DETAIL_FIELDS) {
      if (detail[name] !== undefined && detail[name] !== null) out[name] = detail[name];
    }
    if (detail.detail !== undefined) out.text = detail.detail; // a manual warning's words
    return out;
  }

  function publicReason(r) { return { code: String(r.code), detail: r.detail || "" }; }

  // The only fields of a parcel the page shows. buyer_ref, buyer_sealed, payment
  // references and anything else the ledger holds never reach the DOM.
  function publicParcel(p) {
    const shipment = p.shipment || {};
    const declaration = p.declaration || {};
    const assessment = declaration.assessment || {};
    const screening = p.screening || {};
    const inspection = p.inspection || null;
    return {
      order_id: p.order_id, state: p.state, seller: p.seller, courier: p.courier,
      waybill: shipment.waybill || null, carrier: shipment.carrier || null,
      origin: shipment.origin || p.ship_from || null,
      declaration: declaration.type || null,
      total_krw: assessment.taxable ? assessment.total_krw : (declaration.type ? 0 : null),
      paid_krw: p.payment ? p.payment.amount_krw : null,
      items: (p.items || []).map((i) => ({ description: i.description, quantity: i.quantity })),
      screening_result: screening.result || null,
      reasons: (screening.reasons || []).map(publicReason),
      notes: (screening.notes || []).map(publicReason),
      warnings: (p.warnings || []).map(publicReason),
      inspection: inspection && { result: inspection.result, reason: inspection.reason || "",
        documents: inspection.documents || [] },
      history: (p.history || []).map((h) => ({ action: h.action, state: h.state, org: h.org,
        height: h.height, time_ms: h.time_ms, detail: publicDetail(h.detail) })),
    };
  }

  const WAYBILL = /^[A-Z0-9]{8,20}$/; // a house waybill number (contracts/clearance/rules.py)

  // Every parcel the number names: its order id and, when it is shaped like one, its
  // waybill. Both are looked up: an order id may be shaped like a waybill, so a seller
  // could otherwise shadow another parcel's tracking address with an order named after
  // its waybill (review). Two different parcels are both shown, with a notice.
  async function fetchParcels(id) {
    const lookups = [query("clearance", "parcel", { order_id: id })];
    if (WAYBILL.test(id.toUpperCase())) {
      lookups.push(query("clearance", "parcel", { waybill: id.toUpperCase() }));
    }
    // Whatever one lookup finds is shown even if the other failed (busy, network).
    const settled = await Promise.allSettled(lookups);
    const found = settled.filter((r) => r.status === "fulfilled").map((r) => r.value);
    if (!found.length) {
      const errors = settled.map((r) => r.reason);
      throw errors.find((e) => !isMissing(e)) || errors[0];
    }
    if (found.length === 2 && found[0].order_id === found[1].order_id) return [found[0]];
    return found;
  }

  function milestones(parcel) {
    const seen = {};
    for (const entry of parcel.history) {
      MILESTONES.forEach(([name, states]) => {
        if (states.includes(entry.state) && !seen[name]) seen[name] = entry;
      });
    }
    let stateForIndex = parcel.state;
    if (STOPPED.includes(parcel.state)) {
      const moving = parcel.history.filter((h) => !STOPPED.includes(h.state));
      stateForIndex = moving.length ? moving[moving.length - 1].state : "ORDERED";
    }
    const current = MILESTONES.findIndex(([, states]) => states.includes(stateForIndex));
    return MILESTONES.map(([name], index) => {
      let status;
      if (index < current) status = seen[name] ? "done" : "skipped";
      else if (index === current) status = IN_PROGRESS.includes(parcel.state) ? "current" : "done";
      else status = STOPPED.includes(parcel.state) ? "stopped" : "pending";
      return { name, status, entry: seen[name] || null };
    });
  }

  function reasonText(reason) {
    const key = `reason_${reason.code}`;
    return has(key) ? t(key) : t("reason_unknown", { code: reason.code });
  }

  function reasonItem(reason) {
    return el("li", { class: "reason", "data-code": reason.code },
      el("span", { class: "reason-text" }, reasonText(reason)),
      reason.detail ? el("small", { class: "muted detail" }, t("detail", { text: reason.detail }))
        : null);
  }

  function historyDetail(entry) {
    const d = entry.detail;
    const parts = [];
    if (entry.action === "screen" && d.result) parts.push(t(`screen_${d.result}`));
    if (entry.action === "inspection_result" || entry.action === "resolve_hold") {
      parts.push(t(`state_${entry.state}`));
    }
    if (d.type) parts.push(d.type === "list" ? t("declaration_list") : t("declaration_general"));
    if (d.port) parts.push(d.port);
    if (d.waybill) parts.push(`${t("waybill")} ${d.waybill}`);
    // A reason code of the contract reads in the page's language; free text as written.
    if (d.reason) parts.push(/^[A-Z_]+$/.test(d.reason) ? word("hreason", d.reason) : d.reason);
    if (d.text) parts.push(d.text);
    if (d.note) parts.push(d.note);
    if (Array.isArray(d.documents) && d.documents.length) parts.push(d.documents.join(", "));
    if (d.amount_krw !== undefined) parts.push(`₩${fmtNumber(d.amount_krw)}`);
    return parts.join(" · ");
  }

  function dutyText(parcel) {
    if (parcel.paid_krw !== null && parcel.paid_krw !== undefined) {
      return t("duty_paid", { amount: fmtNumber(parcel.paid_krw) });
    }
    if (parcel.total_krw) return t("duty_due", { amount: fmtNumber(parcel.total_krw) });
    if (parcel.total_krw === 0) return t("duty_none");
    return null;
  }

  function trackCard(parcel) {
    const warned = parcel.screening_result === "warn";
    const steps = milestones(parcel);
    const seenWarnings = new Set();
    const warnings = [...parcel.reasons, ...parcel.warnings].filter((r) => {
      const k = `${r.code}|${r.detail}`;
      if (seenWarnings.has(k)) return false;
      seenWarnings.add(k);
      return true;
    });
    const last = parcel.history[parcel.history.length - 1];
    const tone = STOPPED.includes(parcel.state) ? "bad"
      : parcel.state === "HELD" || warned ? "warn" : "good";
    return [
      el("section", { class: `card status ${tone}`, id: "parcel-status" },
        el("p", { class: "label" }, t("current_status")),
        el("h1", { id: "status-title" }, t(`state_${parcel.state}`)),
        el("p", { id: "status-explain" }, t(`explain_${parcel.state}`)),
        last ? el("p", { class: "muted" }, t("updated_at",
          { time: fmtTime(last.time_ms), height: last.height })) : null),
      el("section", { class: "card" }, el("h2", {}, t("timeline")),
        el("ol", { class: "timeline", id: "timeline" }, steps.map((step) =>
          el("li", { class: `ms ms-${step.status}`, "data-milestone": step.name },
            el("span", { class: "dot", "aria-hidden": "true" }),
            el("span", { class: "ms-name" }, t(`ms_${step.name}`)),
            el("span", { class: "ms-status" },
              step.status === "skipped" && step.name === "inspected"
                ? t("ms_inspection_skipped") : t(`ms_${step.status}`)),
            step.name === "screened" && warned ? el("span", { class: "tag warn" }, t("ms_warned"))
              : null,
            step.entry ? el("time", { class: "muted" }, fmtTime(step.entry.time_ms)) : null))),
        STOPPED.includes(parcel.state)
          ? el("p", { class: "stopped" }, t(`state_${parcel.state}`)) : null),
      el("section", { class: `card ${warnings.length ? "warn" : ""}`, id: "warnings" },
        el("h2", {}, t("warnings_title")),
        warnings.length ? el("ul", { class: "reasons" }, warnings.map(reasonItem))
          : el("p", { class: "muted" }, t("no_warnings")),
        parcel.state === "HELD" && parcel.inspection ? el("div", { class: "hold" },
          el("h3", {}, t("hold_title")),
          el("p", {}, t("hold_reason", { reason: parcel.inspection.reason })),
          el("p", {}, t("hold_docs", { docs: parcel.inspection.documents.join(", ") })))
          : null),
      el("section", { class: "card" }, el("h2", {}, t("track_title", { id: parcel.order_id })),
        dl([
          [t("order_id"), parcel.order_id],
          [t("waybill"), parcel.waybill],
          [t("seller"), orgName(parcel.seller)],
          [t("courier"), orgName(parcel.courier)],
          [t("carrier"), parcel.carrier],
          [t("origin"), parcel.origin],
          [t("declaration"), parcel.declaration === "list" ? t("declaration_list")
            : parcel.declaration === "general" ? t("declaration_general") : null],
          [t("duty"), dutyText(parcel)],
          [t("items"), parcel.items.length ? el("ul", { class: "plain" }, parcel.items.map((i) =>
            el("li", {}, t("item_line", { desc: i.description, qty: i.quantity })))) : null],
        ]),
        parcel.notes.length ? [el("h3", {}, t("notes_title")),
          el("ul", { class: "reasons notes" }, parcel.notes.map(reasonItem))] : null),
      el("section", { class: "card" }, el("h2", {}, t("history")),
        table([t("h_time"), t("h_event"), t("h_by"), t("h_block")],
          parcel.history.map((h) => el("tr", {},
            el("td", { class: "nowrap" }, fmtTime(h.time_ms)),
            el("td", {}, has(`act_${h.action}`) ? t(`act_${h.action}`) : h.action,
              historyDetail(h) ? el("small", { class: "muted detail" }, historyDetail(h)) : null),
            el("td", {}, orgName(h.org)),
            el("td", { class: "num" }, h.height))), "history"),
        el("p", { class: "muted small" }, t("time_zone_note"))),
    ];
  }

  async function viewTrack(id) {
    setTitle(t("track_title", { id }));
    const token = viewToken;
    showLoading();
    let parcels;
    try {
      await loadOrgNames();
      parcels = (await fetchParcels(id)).map(publicParcel);
    } catch (error) {
      if (token === viewToken) showError(error, () => t("parcel_not_found", { id }));
      return;
    }
    if (token !== viewToken) return;
    show(() => trackCards(id, parcels));
    for (const parcel of parcels) followKey(parcel.order_id, () => viewTrackRefresh(id, token));
  }

  function trackCards(id, parcels) {
    if (parcels.length === 1) return trackCard(parcels[0]);
    return [el("p", { class: "warn-note", id: "ambiguous" }, t("track_ambiguous", { id })),
      ...parcels.map((parcel) => trackCard(parcel))];
  }

  async function viewTrackRefresh(id, token) {
    try {
      const parcels = (await fetchParcels(id)).map(publicParcel);
      if (token === viewToken) show(() => trackCards(id, parcels));
    } catch (e) { /* keep what is shown */ }
  }

  // --- meat traceability ------------------------------------------------------------------

  const MOVES = ["birth", "transfer_out", "transfer_in", "arrival", "death", "treat",
    "vaccinate", "recall"];

  function publicOrigin(o) {
    return { animal: o.animal, species: o.species, breed: o.breed, sex: o.sex,
      birth_date: o.birth_date, farm: o.farm, trace_no: o.trace_no,
      // The animal's farm number is its current farm's (a transfer rewrites it): shown
      // beside the birth farm only when the two are one (review: farm A showed B's number).
      farm_no: !o.current_farm || o.current_farm === o.farm ? o.farm_no : null,
      head_count: o.head_count, carcass: o.carcass, slaughterhouse: o.slaughterhouse,
      slaughter_date: o.slaughter_date, grade: o.grade, inspection: o.inspection,
      recalled: Boolean(o.recalled) };
  }

  function publicMove(h) {
    return { action: h.action, time_ms: h.time_ms, org: h.org, source: h.source || null,
      destination: h.destination || null, drug: h.drug || null,
      withdrawal_days: h.withdrawal_days, reason: h.reason || null,
      birth_date: h.birth_date || null, date: h.date || null, kind: h.kind || null };
  }

  // The consumer view and the public parts of the upstream records (movements, recall).
  function publicTrace(r) {
    const c = r.consumer || {};
    const up = r.upstream || {};
    const animals = (up.animals || []).map((a) => ({ id: a.id,
      moves: (a.history || []).filter((h) => MOVES.includes(h.action)).map(publicMove) }));
    const reasons = [];
    for (const lot of up.lots || []) if (lot.recalled_reason) reasons.push(lot.recalled_reason);
    for (const cc of up.carcasses || []) if (cc.recalled_reason) reasons.push(cc.recalled_reason);
    for (const a of animals) for (const m of a.moves) if (m.action === "recall" && m.reason) {
      reasons.push(m.reason);
    }
    const down = r.downstream || {};
    return { number: c.number || r.number, kind: c.kind || r.kind, product: c.product,
      weight_g: c.weight_g, packer: c.packer, shop: c.shop, recalled: Boolean(c.recalled),
      recall_reason: reasons[0] || null, origins: (c.origins || []).map(publicOrigin),
      animals, down_lots: down.lots || [], down_shops: down.shops || [] };
  }

  function word(prefix, value) {
    if (value === null || value === undefined || value === "") return null;
    return has(`${prefix}_${value}`) ? t(`${prefix}_${value}`) : String(value);
  }

  function moveWhere(m) {
    if (m.action === "transfer_out" || m.action === "transfer_in" || m.action === "arrival") {
      return `${orgName(m.source)} → ${orgName(m.destination)}`;
    }
    return orgName(m.org);
  }

  function moveText(m) {
    // A treatment of kind "vaccination" reads as one (review: it read "Treated").
    const name = word("mv", m.action === "treat" && m.kind === "vaccination" ? "vaccinate"
      : m.action);
    if (m.action === "treat" && m.drug) {
      return `${name}: ${t("mv_drug", { drug: m.drug, days: m.withdrawal_days })}`;
    }
    if (m.action === "recall" && m.reason) return `${name}: ${m.reason}`;
    return name;
  }

  function originCard(o, index) {
    return el("section", { class: `card origin ${o.recalled ? "bad" : ""}`,
      "data-animal": o.animal || "" },
      el("h3", {}, o.animal ? `${t("cattle_no")} ${o.animal}` : `${t("carcass")} ${o.carcass}`,
        o.recalled ? el("span", { class: "tag bad" }, t("animal_recalled")) : null),
      dl([
        [t("cattle_no"), o.animal],
        [t("trace_no"), o.trace_no],
        [t("species"), word("species", o.species)],
        [t("breed"), word("breed", o.breed)],
        [t("sex"), word("sex", o.sex)],
        [t("birth_date"), o.birth_date],
        [t("farm"), o.farm ? `${orgName(o.farm)}${o.farm_no ? ` · ${t("farm_no", { no: o.farm_no })}` : ""}` : null],
        [t("head_count"), o.head_count],
        [t("slaughterhouse"), orgName(o.slaughterhouse)],
        [t("slaughter_date"), o.slaughter_date],
        [t("grade"), o.grade ? t("grade_value", { grade: o.grade }) : null, "grade"],
        [t("inspection"), o.inspection ? t(`inspection_${o.inspection}`) : null,
          o.inspection === "fail" ? "bad-text" : null],
        [t("carcass"), o.animal ? o.carcass : null],
      ]),
      index === undefined ? null : null);
  }

  function traceCard(tr) {
    const link = (n) => el("a", { href: `/trace/${encodeURIComponent(n)}` }, n);
    return [
      tr.recalled
        ? el("section", { class: "banner recalled", role: "alert", id: "recall-banner" },
          el("h1", {}, t("recalled_banner")),
          el("p", {}, t("recalled_body")),
          tr.recall_reason ? el("p", {}, t("recalled_reason", { reason: tr.recall_reason })) : null)
        : el("p", { class: "ok-note", id: "recall-status" }, t("not_recalled")),
      el("section", { class: "card", id: "product" },
        el("h1", {}, t("trace_title", { number: tr.number })),
        dl([
          [tr.kind === "lot" ? t("bundle_no") : tr.kind === "carcass" ? t("carcass")
            : t("cattle_no"), tr.number],
          [t("product"), tr.product ? word("product", tr.product) : null],
          [t("weight"), fmtKg(tr.weight_g)],
          [t("packer"), orgName(tr.packer)],
          [t("shop"), orgName(tr.shop)],
        ])),
      el("h2", { class: "section-title" }, t("origins_title")),
      tr.origins.length > 1 ? el("p", { class: "muted" }, t("origins_count", { n: tr.origins.length }))
        : null,
      el("div", { class: "grid", id: "origins" }, tr.origins.map((o) => originCard(o))),
      tr.animals.length ? el("section", { class: "card", id: "movements" },
        el("h2", {}, t("movements")),
        tr.animals.map((a) => [
          el("h3", {}, `${t("cattle_no")} ${a.id}`),
          table([t("m_date"), t("m_event"), t("m_where")], a.moves.map((m) => el("tr", {},
            // The day a birth or a treatment happened, as reported, not when it was
            // recorded (review: a treatment showed the later day of its record, which
            // read as a slaughter inside the withdrawal period).
            el("td", { class: "nowrap" }, m.action === "birth" && m.birth_date ? m.birth_date
              : m.action === "treat" && m.date ? m.date : fmtTime(m.time_ms)),
            el("td", {}, moveText(m)),
            el("td", {}, moveWhere(m)))), "moves"),
        ]),
        el("p", { class: "muted small" }, t("time_zone_note"))) : null,
      tr.down_lots.length || (tr.kind !== "lot" && tr.down_shops.length)
        ? el("section", { class: "card" }, el("h2", {}, t("ds_title")), dl([
          [t("ds_lots"), tr.down_lots.length ? el("span", { class: "links" },
            tr.down_lots.map((n) => [link(n), " "])) : null],
          [t("ds_shops"), tr.down_shops.map(orgName).join(", ")],
        ])) : null,
    ];
  }

  async function viewTrace(number) {
    setTitle(t("trace_title", { number }));
    const token = viewToken;
    showLoading();
    let trace;
    try {
      await loadOrgNames();
      trace = publicTrace(await query("livestock", "trace", { number }));
    } catch (error) {
      if (token === viewToken) showError(error, () => t("trace_not_found", { number }));
      return;
    }
    if (token !== viewToken) return;
    show(() => traceCard(trace));
  }

  // --- explorer ---------------------------------------------------------------------------

  const EVENT_TYPES = ["create_order", "screen", "cancel", "ship", "declare", "arrive",
    "select_inspection", "inspection_result", "resolve_hold", "release", "pay_duty",
    "out_for_delivery", "deliver", "confirm_receipt", "warn", "pre_alert", "buyer_notice",
    "duty_assessed", "combined_taxation_late", "combined_taxation_undone", "rates_set",
    "restricted_updated", "register_birth", "birth", "transfer_out", "transfer_in",
    "transfer_refused", "death", "treat", "vaccinate", "update_rules",
    "record_readings", "alert", "violation", "arrival", "slaughter", "cut", "bundle",
    "receive", "sell", "recall", "recall_notice", "member_added", "member_revoked", "message"];
  const MAX_BLOCKS = 20;
  const MAX_TXS_SHOWN = 50;

  function openStream(url, types, onEvent, onState) {
    if (!window.EventSource) return;
    const source = new EventSource(url);
    source.addEventListener("open", () => onState(true));
    source.addEventListener("error", () => onState(false));
    for (const type of types) {
      source.addEventListener(type, (event) => {
        let record = null;
        try { record = JSON.parse(event.data); } catch (e) { record = null; }
        if (record) onEvent(record);
      });
    }
    cleanups.push(() => source.close());
  }

  function followKey(key, onChange) {
    let timer = null;
    openStream(`/v1/events?key=${encodeURIComponent(key)}`, EVENT_TYPES, () => {
      clearTimeout(timer);
      timer = setTimeout(onChange, 150);
    }, () => {});
  }

  function viewExplorer() {
    setTitle(t("explorer_title"));
    const token = viewToken;
    const st = { status: null, blocks: new Map(), selected: null, txs: new Map(), live: false,
      events: [], busy: false };

    const proposerName = (hex) => {
      const v = st.status && st.status.validators.find((x) => x.node_id === hex);
      return v ? v.name : short(hex, 8);
    };

    const draw = () => show(() => explorerView(st, proposerName, select));

    async function refresh() {
      if (st.busy || token !== viewToken) return;
      st.busy = true;
      try {
        st.status = await api("/v1/status");
        const top = st.status.height;
        const want = [];
        for (let h = top; h >= Math.max(1, top - MAX_BLOCKS + 1); h -= 1) {
          if (!st.blocks.has(h)) want.push(h);
        }
        const got = await Promise.all(want.map((h) => api(`/v1/blocks/${h}`).catch(() => null)));
        for (const b of got) if (b) st.blocks.set(b.header.height, b);
        for (const h of [...st.blocks.keys()]) if (h <= top - MAX_BLOCKS) st.blocks.delete(h);
      } catch (e) {
        st.error = e;
      } finally {
        st.busy = false;
      }
      if (token === viewToken) draw();
    }

    async function select(height) {
      st.selected = height;
      draw();
      const block = st.blocks.get(height);
      if (!block || st.txs.has(height)) return;
      const txs = block.txs.slice(0, MAX_TXS_SHOWN);
      const receipts = await Promise.all(txs.map((tx) => api(`/v1/txs/${tx.hash}`)
        .catch(() => null)));
      st.txs.set(height, txs.map((tx, i) => ({ hash: tx.hash, contract: tx.contract,
        action: tx.action, signer: tx.signer, code: receipts[i] ? receipts[i].code : "?",
        message: receipts[i] ? receipts[i].message : "" })));
      if (token === viewToken) draw();
    }

    showLoading();
    refresh();
    const timer = setInterval(refresh, 2000);
    cleanups.push(() => clearInterval(timer));
    let pending = null;
    openStream("/v1/events", EVENT_TYPES, (record) => {
      st.events.unshift({ height: record.height, contract: record.contract, type: record.type,
        time_ms: record.time_ms });
      st.events.length = Math.min(st.events.length, 10);
      clearTimeout(pending);
      pending = setTimeout(refresh, 100);
    }, (live) => {
      st.live = live;
      const badge = document.getElementById("live");
      if (badge) {
        badge.textContent = live ? t("live_on") : t("live_off");
        badge.className = live ? "tag good" : "tag warn";
      }
    });
  }

  function explorerView(st, proposerName, select) {
    if (!st.status) {
      return el("section", { class: "card error" }, st.error ? t("error_network") : t("loading"));
    }
    const s = st.status;
    const blocks = [...st.blocks.values()].sort((a, b) => b.header.height - a.header.height);
    const lastProposed = {};
    for (const b of blocks) {
      const p = b.header.proposer;
      if (!(p in lastProposed)) lastProposed[p] = b.header.height;
    }
    const selected = st.selected ? st.blocks.get(st.selected) : null;
    const txs = st.selected ? st.txs.get(st.selected) : null;
    return [
      el("div", { class: "title-row" }, el("h1", {}, t("explorer_title")),
        el("span", { id: "live", class: st.live ? "tag good" : "tag warn" },
          st.live ? t("live_on") : t("live_off"))),
      el("div", { class: "grid" },
        el("section", { class: "card", id: "node-status" }, el("h2", {}, t("status_title")),
          dl([
            [t("s_name"), s.name],
            [t("s_height"), fmtNumber(s.height)],
            [t("s_round"), `${s.round} / ${s.step}`],
            [t("s_syncing"), s.syncing ? t("yes") : t("no")],
            [t("s_mempool"), fmtNumber(s.mempool)],
            [t("s_peers"), `${s.peers.length} / ${Math.max(0, s.validators.length - 1)}`],
            [t("s_last_block"), s.latest_block_time_ms ? ago(s.latest_block_time_ms) : "—"],
          ])),
        el("section", { class: "card", id: "validators" }, el("h2", {}, t("validators_title")),
          table([t("v_name"), t("v_org"), t("v_live"), t("v_last")], s.validators.map((v) => {
            const self = v.node_id === s.node_id;
            const up = self || v.connected;
            return el("tr", { "data-validator": v.name },
              el("td", {}, v.name), el("td", {}, v.org),
              el("td", {}, el("span", { class: `tag ${up ? "good" : "bad"}` },
                self ? t("live_self") : up ? t("live_up") : t("live_down"))),
              el("td", { class: "num" }, lastProposed[v.node_id] || "—"));
          })))),
      el("section", { class: "card", id: "blocks" }, el("h2", {}, t("blocks_title")),
        blocks.length ? [el("p", { class: "muted small" }, t("block_hint")),
          table([t("b_height"), t("b_time"), t("b_txs"), t("b_proposer"), t("b_hash")],
            blocks.map((b) => el("tr", { class: `clickable ${b.header.height === st.selected ? "selected" : ""}`,
              tabindex: "0", "data-height": b.header.height,
              onclick: () => select(b.header.height),
              onkeydown: (e) => { if (e.key === "Enter") select(b.header.height); } },
            el("td", { class: "num" }, b.header.height),
            el("td", { class: "nowrap" }, fmtTime(b.header.time_ms, true)),
            el("td", { class: "num" }, b.txs.length),
            el("td", {}, proposerName(b.header.proposer)),
            el("td", {}, el("code", {}, short(b.hash, 12))))), "blocks")]
          : el("p", { class: "muted" }, t("no_blocks"))),
      selected ? el("section", { class: "card", id: "block-txs" },
        el("h2", {}, t("block_title", { height: selected.header.height })),
        el("p", {}, el("code", { class: "wrap" }, selected.hash)),
        !selected.txs.length ? el("p", { class: "muted" }, t("no_txs"))
          : !txs ? el("p", { class: "loading" }, t("loading"))
            : [table([t("tx_hash"), t("tx_call"), t("tx_signer"), t("tx_code")], txs.map((x) =>
              el("tr", {}, el("td", {}, el("code", {}, short(x.hash, 12))),
                el("td", {}, `${x.contract}.${x.action}`),
                el("td", {}, el("code", {}, short(x.signer, 10))),
                el("td", { class: x.code === "OK" ? "good-text" : "bad-text", title: x.message || null },
                  x.code === "OK" ? t("code_ok") : String(x.code)))), "txs"),
            selected.txs.length > MAX_TXS_SHOWN
              ? el("p", { class: "muted" }, t("more_txs", { n: selected.txs.length - MAX_TXS_SHOWN }))
              : null]) : null,
      st.events.length ? el("section", { class: "card", id: "events" },
        el("h2", {}, "/v1/events"),
        el("ul", { class: "plain events" }, st.events.map((e) => el("li", {},
          el("code", {}, `#${e.height}`), " ", `${e.contract}.${e.type}`, " ",
          el("small", { class: "muted" }, fmtTime(e.time_ms, true)))))) : null,
    ];
  }

  // --- routing ----------------------------------------------------------------------------

  function route() {
    for (const close of cleanups) close();
    cleanups = [];
    viewToken += 1;
    redraw = null;
    const path = location.pathname;
    let match;
    // A malformed %-escape (/track/%ZZ) made decodeURIComponent throw: a blank page.
    const id = (raw) => { try { return decodeURIComponent(raw).trim(); } catch { return raw; } };
    if ((match = path.match(/^\/track\/(.+)$/))) viewTrack(id(match[1]));
    else if ((match = path.match(/^\/trace\/(.+)$/))) viewTrace(id(match[1]));
    else if (path === "/explorer") viewExplorer();
    else viewSearch();
    window.scrollTo(0, 0);
  }

  function navigate(path) {
    history.pushState(null, "", path);
    route();
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey ||
        event.ctrlKey || event.shiftKey || event.altKey) return;
    const href = link.getAttribute("href");
    if (!/^\/(track|trace|explorer|$)/.test(href)) return; // API links load normally
    event.preventDefault();
    navigate(href);
  });
  window.addEventListener("popstate", route);
  const toggle = document.getElementById("lang-toggle");
  if (toggle) toggle.addEventListener("click", switchLanguage);
  applyStaticText();
  route();
})();
