// fakelens web page: upload an image, show each model's verdict, the ensemble's verdict, the heatmap overlay
// (opacity slider, method selector) and the robustness badge. Plain JS, no build step, nothing from a CDN.
// Files are fetched with the API key header and shown through blob: URLs (an <img src> cannot send a header).
"use strict";

(() => {
  const KEY_STORAGE = "fakelens.apiKey";
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  };

  const state = { info: null, file: null, analysis: null, shownKey: null, model: null, method: null, urls: new Map() };

  // ---------------------------------------------------------------- API key
  // The key lives in this tab only (sessionStorage) unless "remember" keeps it in the browser (localStorage);
  // "forget" removes it from both.
  const keyInput = $("api-key");
  const remember = $("key-remember");
  remember.checked = localStorage.getItem(KEY_STORAGE) !== null;
  keyInput.value = (remember.checked ? localStorage : sessionStorage).getItem(KEY_STORAGE) || "";
  const showKeyState = () => {
    $("key-state").textContent = !keyInput.value ? "" : remember.checked ? "kept in this browser" : "kept until this tab closes";
  };
  const storeKey = () => {
    const [keep, drop] = remember.checked ? [localStorage, sessionStorage] : [sessionStorage, localStorage];
    drop.removeItem(KEY_STORAGE);
    if (keyInput.value.trim()) keep.setItem(KEY_STORAGE, keyInput.value.trim());
    else keep.removeItem(KEY_STORAGE);
    showKeyState();
  };
  // A result belongs to the key that loaded it: another key (or none) hides it, as it switches the history.
  const dropForeignResult = () => {
    if (state.analysis && state.shownKey !== apiKey()) clearResult();
  };
  keyInput.addEventListener("input", () => { storeKey(); updateButton(); dropForeignResult(); });
  remember.addEventListener("change", storeKey);
  $("key-forget").addEventListener("click", () => {
    keyInput.value = "";
    remember.checked = false;
    localStorage.removeItem(KEY_STORAGE);
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
    updateButton();
    dropForeignResult();
    loadHistory();
  });
  keyInput.addEventListener("change", () => loadHistory());
  $("key-form").addEventListener("submit", (e) => e.preventDefault());
  $("key-toggle").addEventListener("click", () => {
    const hidden = keyInput.type === "password";
    keyInput.type = hidden ? "text" : "password";
    $("key-toggle").textContent = hidden ? "hide" : "show";
  });
  showKeyState();
  const apiKey = () => keyInput.value.trim();

  // The verdict as shown: a small image's verdict rests on few pixels, so it says so on the pill itself.
  // A score within CLOSE of its threshold is a close call (the report's wording: fakelens.report.reading).
  const CLOSE = 0.10;
  const isClose = (score, threshold) => score !== null && score !== undefined && Math.abs(score - threshold) < CLOSE;
  // The model that read least of the image: tiles (> 1) capped by the tile limit, else a centre crop.
  const leastRead = (a) => a.models.reduce((lo, m) => ((m.coverage ?? 1) < (lo.coverage ?? 1) ? m : lo));
  // A blank (uniform) image has nothing to judge: no verdict is shown for it, only its score.
  const verdictText = (a) =>
    (a.blank ? ["no verdict", "blank image"] : [a.verdict, isClose(a.score, a.threshold) ? "close call" : ""])
      .concat([a.small ? "small image" : "", a.partial ? "read in part" : ""]).filter(Boolean).join(" · ");
  const verdictClass = (a) => `${a.blank ? "none" : a.verdict}${a.small ? " small-image" : ""}`;

  // A class-agnostic method's map ignores the target: it shows where the model is active, not evidence for fake.
  const AGNOSTIC = "class-agnostic: where the model is active, not evidence for fake";
  const isAgnostic = (method) => ((state.info && state.info.class_agnostic_methods) || []).includes(method);

  async function api(path, options = {}) {
    const headers = Object.assign({ "X-API-Key": apiKey() }, options.headers || {});
    const res = await fetch(path, Object.assign({}, options, { headers }));
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        if (body && body.error) message = body.error.message;
      } catch (_) { /* not JSON */ }
      const retry = res.headers.get("Retry-After");
      if (retry && !message.includes("retry in")) message += ` (retry in ${retry} s)`;
      const err = new Error(message);
      err.status = res.status;
      throw err;
    }
    return res;
  }

  async function blobUrl(path) {
    if (state.urls.has(path)) return state.urls.get(path);
    const res = await api(path);
    const url = URL.createObjectURL(await res.blob());
    state.urls.set(path, url);
    return url;
  }

  function clearUrls() {
    for (const url of state.urls.values()) URL.revokeObjectURL(url);
    state.urls.clear();
  }

  function clearResult() {
    clearUrls();
    state.analysis = null;
    state.shownKey = null;
    $("result").hidden = true;
    $("empty").hidden = false;
  }

  function setStatus(text, kind = "") {
    const s = $("status");
    s.textContent = text;
    s.className = `status ${kind}`;
  }

  // ---------------------------------------------------------------- server info and methods
  async function loadInfo() {
    try {
      const res = await fetch("/v1/info");
      state.info = await res.json();
    } catch (_) {
      setStatus("cannot reach the server", "error");
      return;
    }
    const box = $("method-choices");
    box.replaceChildren();
    for (const m of state.info.allowed_methods) {
      const input = el("input", { type: "checkbox", value: m });
      input.checked = state.info.methods.includes(m);
      input.addEventListener("change", updateButton);
      box.append(el("label", Object.assign({ class: "chip" }, isAgnostic(m) ? { title: AGNOSTIC } : {}), input, m));
    }
    const mb = (state.info.max_upload_bytes / 1048576).toFixed(0);
    const mp = (state.info.max_pixels / 1e6).toFixed(0);
    const models = state.info.models.map((m) => m.name).join(", ");
    $("server-info").textContent = `fakelens ${state.info.version} · models: ${models} · up to ${mb} MB and ${mp} MP per image`;
  }

  const chosenMethods = () =>
    [...document.querySelectorAll("#method-choices input:checked")].map((i) => i.value);

  // a disabled button says what it waits for (it gave no reason: the key hint sat in the history panel)
  function updateButton() {
    const n = chosenMethods().length;
    const max = state.info ? state.info.max_methods : 4;
    const missing = !state.file ? "choose an image" : !apiKey() ? "enter your API key (top right)"
      : n < 1 ? "choose a method" : n > max ? `choose at most ${max} methods` : "";
    $("analyze-btn").disabled = Boolean(missing);
    $("analyze-hint").textContent = missing ? `To analyse: ${missing}.` : "";
  }

  // ---------------------------------------------------------------- upload
  const dz = $("dropzone");
  const fileInput = $("file-input");
  dz.addEventListener("click", () => fileInput.click());
  dz.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
  fileInput.addEventListener("change", () => { if (fileInput.files.length) chooseFile(fileInput.files[0]); });
  for (const ev of ["dragenter", "dragover"]) dz.addEventListener(ev, (e) => { e.preventDefault(); dz.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) dz.addEventListener(ev, (e) => { e.preventDefault(); dz.classList.remove("over"); });
  dz.addEventListener("drop", (e) => {
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) chooseFile(f);
  });

  function chooseFile(f) {
    state.file = f;
    $("file-name").textContent = `${f.name} · ${(f.size / 1024).toFixed(0)} KB`;
    setStatus("");
    updateButton();
  }

  $("analyze-btn").addEventListener("click", analyse);

  async function analyse() {
    if (!state.file) return;
    const form = new FormData();
    form.append("image", state.file, state.file.name);
    form.append("methods", chosenMethods().join(","));
    $("analyze-btn").disabled = true;
    setStatus("analysing…", "busy");
    try {
      const res = await api("/v1/analyses", { method: "POST", body: form });
      const analysis = await res.json();
      setStatus(`done in ${(analysis.duration_ms / 1000).toFixed(1)} s`);
      await show(analysis);
      revealResult();
      loadHistory();
    } catch (err) {
      setStatus(err.message, "error");
    } finally {
      updateButton();
    }
  }

  // ---------------------------------------------------------------- result
  const pct = (p) => (p === null || p === undefined ? "–" : `${(100 * p).toFixed(1)}%`);
  // Probabilities as the HTML report writes them (fakelens.report.reading.prob): 2 decimals, and a score next to
  // its threshold gets the digits that show which side it is on (0.4994 is not "0.50").
  const probVs = (p, t) => {
    if (p === null || p === undefined || !Number.isFinite(p)) return "–";
    let d = 2;
    while (d < 6 && p !== t && p.toFixed(d) === t.toFixed(d)) d += 1;
    return p.toFixed(d);
  };
  // A threshold with the decimals it has (0.5 → "0.50", 0.533 → "0.533"), as the report's threshold_text.
  const thrText = (t) => {
    if (t === null || t === undefined) return "–";
    const two = t.toFixed(2);
    return Number(two) === t ? two : t.toFixed(6).replace(/0+$/, "");
  };
  const num = (v, digits = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  async function show(analysis) {
    clearUrls();
    state.analysis = analysis;
    state.shownKey = apiKey();
    state.full = false;
    $("empty").hidden = true;
    $("result").hidden = false;

    const ens = $("ensemble");
    ens.className = `ensemble ${analysis.blank ? "none" : analysis.verdict}`;
    $("ens-pill").className = `pill ${verdictClass(analysis)}`;
    $("ens-pill").textContent = verdictText(analysis);
    $("ens-pill").title = analysis.small ? "a small image: little evidence either way" : "";
    $("ens-score").textContent = `p(fake) ${probVs(analysis.score, analysis.threshold)}`;
    $("ens-fill").className = `fill ${analysis.blank ? "none" : analysis.verdict}`;
    $("ens-fill").style.width = `${100 * analysis.score}%`;
    $("ens-thr").style.left = `calc(${100 * analysis.threshold}% - 1px)`;
    $("ens-rule").textContent =
      `${analysis.models.length} model${analysis.models.length === 1 ? "" : "s"} combined by “${analysis.rule}”, threshold ${thrText(analysis.threshold)}` +
      (isClose(analysis.score, analysis.threshold) ? " · close to the threshold: weak evidence either way" : "") +
      (analysis.calibrated
        ? " · p(fake) calibrated on validation photos"
        : " · scores are model outputs, not calibrated odds that the image was manipulated") +
      (new Set(analysis.models.map((m) => m.verdict)).size > 1 ? " · the models disagree: a weak verdict" : "") +
      (analysis.models.some((m) => m.untrained) ? " · untrained models (a random real/fake head): this verdict means nothing" : "") +
      (analysis.blank ? " · a blank image (uniform): no content and no trace to judge, the verdict says nothing" : "") +
      (analysis.small
        ? " · a small image (under half as many pixels as a model's input): little evidence either way" : "") +
      (analysis.partial
        ? ` · only ${Math.round(100 * Math.min(...analysis.models.map((m) => m.coverage ?? 1)))} % of the image read (${leastRead(analysis).tiles > 1 ? "the tile limit" : "a centre crop"}): the rest was not judged`
        : "") +
      (analysis.transparent
        ? ` · ${Math.max(1, Math.round(100 * analysis.transparent))} % transparent: the models saw it as white; the heatmaps leave it out`
        : "") +
      (analysis.frames > 1 ? ` · ${analysis.frames} frames or pages: only the first was analysed` : "");

    // the analysis in words (the report's reading): what an analyst and a screen reader need beside the picture
    const reading = $("reading-body");
    reading.replaceChildren();
    for (const { title, text } of analysis.reading || []) {
      reading.append(el("p", {}, el("b", { text: `${title}. ` }), document.createTextNode(text)));
    }
    $("reading").hidden = !(analysis.reading && analysis.reading.length);

    const meta = $("image-meta");
    meta.replaceChildren();
    const img = analysis.image;
    const rows = [
      ["file", img.filename || "–"],
      ["size", `${img.width} × ${img.height} ${img.format ? img.format.toUpperCase() : ""}`],
      ["sha256", img.sha256],
      ["analysed", new Date(analysis.created_at).toLocaleString()],
    ];
    for (const [k, v] of rows) meta.append(el("dt", { text: k }), el("dd", { text: v, title: v }));

    const cards = $("model-cards");
    cards.replaceChildren();
    const modelSelect = $("model-select");
    modelSelect.replaceChildren();
    for (const m of analysis.models) {
      const fill = el("div", { class: `fill ${m.verdict}` });
      fill.style.width = `${100 * (m.score || 0)}%`;
      const thr0 = m.threshold ?? analysis.threshold;
      const thr = el("div", { class: "thr" });
      thr.style.left = `calc(${100 * thr0}% - 1px)`;
      const grades = Object.values(m.robustness || {}).filter(Boolean).map((b) => b.grade).filter(Boolean);
      const na = Object.keys(m.errors || {});
      const robust = grades.filter((g) => g === "ok").length;
      const foot = `${Object.keys(m.heatmaps).length} heatmap(s)` +
        (grades.length ? ` · ${robust} of ${grades.length} robust` : "") +
        (na.length ? ` · ${na.join(", ")}: cannot run on this model` : "");
      const card = el(
        "div",
        { class: `card ${analysis.blank ? "none" : m.verdict}`, "data-model": m.key, tabindex: "0", role: "button", "aria-pressed": "false" },
        el("div", { class: "card-head" }, el("span", { class: "card-name", text: m.name, title: m.name }),
          m.untrained ? el("span", { class: "pill untrained", text: "untrained", title: "a random real/fake head: this score means nothing" }) : "",
          // a blank image has nothing to judge: no model's verdict either, only its score
          el("span", { class: `pill ${analysis.blank ? "none" : m.verdict}`, text: analysis.blank ? "no verdict" : m.verdict })),
        el("div", { class: "card-score" }, probVs(m.score, thr0), el("span", { class: "unit", text: "p(fake)" })),
        el("div", { class: "card-thr", text: `threshold ${thrText(thr0)}${isClose(m.score, thr0) ? " · close call" : ""}` }),
        el("div", { class: "bar" }, fill, thr),
        el("div", { class: "card-foot", text: foot, title: Object.entries(m.errors || {}).map(([k, v]) => `${k}: ${v}`).join("\n") }),
      );
      onActivate(card, () => selectModel(m.key));
      cards.append(card);
      modelSelect.append(el("option", { value: m.key, text: m.name }));
    }

    $("base-image").alt = `the analysed image, ${img.filename || "no file name"}`;
    await showImage($("base-image"), await blobUrl(img.url));
    renderFaces(analysis);
    const first = analysis.models.find((m) => Object.keys(m.heatmaps).length) || analysis.models[0];
    await selectModel(first.key);
  }

  // A small image is shown enlarged by a whole factor with its pixels kept sharp (an analyst wants to see them),
  // so that it fills the stage like a large one; a large one is shrunk to fit, and the note says by how much, with
  // a toggle (the button, or a click on the image) to a full-size view that scrolls. The overlay follows the frame.
  async function showImage(base, url) {
    base.src = url;
    await base.decode().catch(() => {});
    fitImage();
  }

  function fitImage() {
    const base = $("base-image");
    const stage = $("stage");
    const w = base.naturalWidth, h = base.naturalHeight;
    const k = w && h && !state.full ? Math.floor(Math.min(stage.clientWidth / w, 620 / h)) : 1;
    const enlarged = k >= 2;
    base.style.width = enlarged ? `${k * w}px` : "";
    base.style.height = enlarged ? `${k * h}px` : "";
    stage.classList.toggle("enlarged", enlarged);
    stage.classList.toggle("full", state.full);
    // against the original's pixels: the image shown is a preview of at most 2048 px of a larger upload
    const original = (state.analysis && state.analysis.image && state.analysis.image.width) || w;
    const shown = original ? Math.round((100 * base.getBoundingClientRect().width) / original) : 100;
    const shrunk = !enlarged && !state.full && shown < 100;
    stage.classList.toggle("shrunk", shrunk);
    if (state.full) {
      stage.setAttribute("tabindex", "0");
      stage.setAttribute("role", "region");
      stage.setAttribute("aria-label", "the image at full size (scroll to see all of it)");
    } else {
      for (const a of ["tabindex", "role", "aria-label"]) stage.removeAttribute(a);
    }
    const toggle = $("zoom-toggle");
    toggle.hidden = !(shrunk || state.full);
    toggle.textContent = state.full ? "fit to view" : "full size";
    toggle.setAttribute("aria-pressed", String(state.full));
    $("zoom-note").textContent = enlarged ? `shown ${k}× (pixels enlarged)`
      : shrunk ? `image scaled to ${shown}\u00a0%`
      : state.full ? `${shown < 100 ? `the preview at its own pixels (${shown}\u00a0% of the original)` : "full size (100\u00a0%)"}: scroll to see all of it`
      : "";
  }

  function toggleFull() {
    if (!state.analysis || !(state.full || $("stage").classList.contains("shrunk"))) return;
    state.full = !state.full;
    fitImage();
  }
  $("zoom-toggle").addEventListener("click", toggleFull);
  $("stage").addEventListener("click", toggleFull);
  let stageWidth = 0;
  new ResizeObserver(() => {
    const width = $("stage").clientWidth;
    if (width !== stageWidth && state.analysis) fitImage();
    stageWidth = width;
  }).observe($("stage"));

  // Bring a new result into view and move focus to its verdict (on a phone it lies far below the upload form).
  function revealResult() {
    const heading = $("ens-heading");
    heading.focus({ preventScroll: true });
    const box = $("ensemble").getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) {
      const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      $("ensemble").scrollIntoView({ block: "start", behavior: smooth ? "smooth" : "auto" });
    }
  }

  // Enter and Space act on an element with role="button", as on a real button.
  function onActivate(node, action) {
    node.addEventListener("click", action);
    node.addEventListener("keydown", (e) => {
      if (e.target !== node || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        action();
      }
    });
  }

  // Every face judged on its own: numbered boxes on the image and a verdict per face under the ensemble's.
  function renderFaces(analysis) {
    const frame = document.querySelector(".stage .frame");
    for (const b of frame.querySelectorAll(".face-box")) b.remove();
    const list = $("ens-faces");
    list.replaceChildren();
    const faces = analysis.faces || [];
    list.hidden = faces.length === 0;
    if (!faces.length) return;
    list.append(el("span", { class: "muted", text: "each face on its own:" }));
    const { width: w, height: h } = analysis.image;
    faces.forEach((f, i) => {
      const [x0, y0, x1, y1] = f.box;
      const label = `face ${i + 1}: ${f.verdict} ${probVs(f.score, analysis.threshold)}`;
      const box = el("div", { class: "face-box", title: label }, el("span", { text: String(i + 1) }));
      Object.assign(box.style, {
        left: `${(100 * x0) / w}%`, top: `${(100 * y0) / h}%`,
        width: `${(100 * (x1 - x0)) / w}%`, height: `${(100 * (y1 - y0)) / h}%`,
      });
      frame.append(box);
      list.append(el("span", { class: "face-item", title: label }, el("b", { text: `${i + 1}` }), " ",
        el("span", { class: `pill ${f.verdict}`, text: f.verdict }), ` ${probVs(f.score, analysis.threshold)}`));
    });
    if (analysis.verdict === "real" && faces.some((f) => f.verdict === "fake")) {
      list.append(el("span", { class: "face-warning", text: "a face reads fake while the image reads real: look closely at it" }));
    }
  }

  async function selectModel(key) {
    const a = state.analysis;
    const m = a.models.find((x) => x.key === key);
    state.model = m;
    $("model-select").value = key;
    for (const c of document.querySelectorAll(".card")) {
      c.classList.toggle("selected", c.dataset.model === key);
      c.setAttribute("aria-pressed", String(c.dataset.model === key));
    }
    const methodSelect = $("method-select");
    methodSelect.replaceChildren();
    for (const method of Object.keys(m.heatmaps)) {
      methodSelect.append(el("option", { value: method, text: isAgnostic(method) ? `${method} (class-agnostic)` : method }));
    }
    for (const [method, why] of Object.entries(m.errors || {})) {
      methodSelect.append(el("option", { value: method, text: `${method} (n/a)`, disabled: "", title: why }));
    }
    const keep = state.method && m.heatmaps[state.method] ? state.method : Object.keys(m.heatmaps)[0];
    await selectMethod(keep);
  }

  async function selectMethod(method) {
    const m = state.model;
    state.method = method || null;
    const overlay = $("overlay-image");
    const links = $("file-links");
    links.replaceChildren();
    const agnostic = Boolean(method) && isAgnostic(method);
    // colour is a share of each map's own peak: a redder map is not stronger evidence than another map
    $("legend-high").textContent = agnostic ? "the map's peak: activity" : "the map's peak: evidence for “fake”";
    $("agnostic-note").hidden = !agnostic;
    $("agnostic-note").textContent = agnostic ? `${method} is ${AGNOSTIC}` : "";
    if (!method) {
      overlay.hidden = true;
      $("flat-stamp").hidden = true;
      renderBadge(null, m.errors);
      return;
    }
    $("method-select").value = method;
    overlay.hidden = false;
    overlay.src = await blobUrl(m.heatmaps[method]);
    // a near-uniform map scaled to its own peak would be painted all hot: greyed and stamped instead
    const flat = Boolean(m.summaries && m.summaries[method] && m.summaries[method].flat);
    overlay.classList.toggle("flat", flat);
    $("flat-stamp").hidden = !flat;
    overlay.dataset.method = method;
    overlay.dataset.model = m.key;
    overlay.alt = `${method} heatmap of ${m.name} on ${state.analysis.image.filename || "the image"}` +
      (agnostic ? ` (${AGNOSTIC})` : " (evidence for fake)") + (flat ? " (flat: no location)" : "");
    applyOpacity();
    for (const [label, path, name] of [
      ["heatmap.png", m.heatmaps[method], `${m.key}.${method}.heatmap.png`],
      ["overlay.png", m.overlays[method], `${m.key}.${method}.overlay.png`],
      ["map.npy", m.maps[method], `${m.key}.${method}.map.npy`],
    ]) {
      const a = el("a", { href: "#", text: label });
      a.addEventListener("click", (e) => { e.preventDefault(); download(path, name); });
      links.append(a);
    }
    renderBadge(m.robustness ? m.robustness[method] : null, null, m.summaries ? m.summaries[method] : null);
  }

  $("model-select").addEventListener("change", (e) => selectModel(e.target.value));
  $("method-select").addEventListener("change", (e) => selectMethod(e.target.value));

  const opacity = $("opacity");
  function applyOpacity() {
    const v = Number(opacity.value) / 100;
    $("overlay-image").style.opacity = String(v);
    $("opacity-value").textContent = `${opacity.value}%`;
  }
  opacity.addEventListener("input", applyOpacity);
  applyOpacity();

  // peak / mean of a flat map: none when the map has no positive part (its "0.0" would be an artefact), else
  // the number, marked flat.
  // A tiled image's badge grades one tile: its numbers are that tile's map, the summary the stitched map's.
  const tileOf = (b) => (Array.isArray(b.tile) && b.tile.length === 4 ? b.tile : null);

  function peakToMean(b, summary) {
    if (tileOf(b)) summary = null;
    const flat = Boolean(b.flat || (summary && summary.flat));
    const max = summary && summary.stats ? summary.stats.max : null;
    const none = !(b.peak_to_mean > 0) || (max !== null && max !== undefined && max <= 0);
    if (flat && none) return "n/a (flat)";
    return flat ? `${num(b.peak_to_mean, 2)} (flat)` : num(b.peak_to_mean, 2);
  }

  function renderBadge(b, errors, summary) {
    const box = $("badge");
    box.replaceChildren();
    if (!b) {
      const why = errors && Object.keys(errors).length ? "no heatmap for this model" : "robustness not checked";
      box.append(el("div", { class: "muted small", text: why }));
      return;
    }
    if (b.error) {
      box.append(el("div", { class: "muted small", text: `robustness check failed: ${b.error}` }));
      return;
    }
    box.append(el("div", { class: "badge-grade" }, el("span", { class: `pill ${b.grade}`, text: b.grade, id: "badge-grade" }),
      el("span", { class: "small muted", text: b.grade === "ok" ? "heatmap holds under transforms" : "read this heatmap with care" })));
    const table = el("table", { class: "nums" });
    // [label, value, what it means] — the meanings as the report's badge table gives them
    const rows = [
      ["equivariance, mean", num(b.equivariance),
        "cosine between the map and the maps of 4 transformed views (flip, rotation, scale, shift) carried back; 1 = moves with the image, ≥ 0.80 passes"],
      ["equivariance, worst", `${num(b.equivariance_min)}${b.worst_view ? ` (${b.worst_view})` : ""}`,
        "the view whose map followed the image least"],
      ["mass on black fill", `${pct(b.border_mass)} (area ${pct(b.fill_fraction)})`,
        "share of the map on the black borders of the transformed views against their share of the pixels; more mass than area = the map reacts to the frame"],
      ["corner mass", `${pct(b.corner_mass)} (chance ${pct(b.corner_chance)})`,
        "share of the map in the four corner cells; maps that collapse into corners point at an artefact, not at content"],
      ["peak / mean", peakToMean(b, summary), "the map's maximum over its mean: 1 = uniform, higher = more concentrated"],
      ["entropy", num(b.entropy, 3), "how spread the map is: 0 = one point, 1 = uniform"],
      ["score spread", num(b.score_spread, 4),
        "how far the explained score (log-odds) moved across the five views: a large spread means the transforms changed the model's mind"],
    ];
    for (const [k, v, tip] of rows) {
      table.append(el("tr", { title: tip }, el("td", { text: k }), el("td", { class: "num", text: v })));
    }
    box.append(table);
    const legend = el("dl", { class: "badge-legend small" });
    for (const [k, , tip] of rows) legend.append(el("dt", { text: k }), el("dd", { text: tip }));
    box.append(el("details", { class: "badge-help" }, el("summary", { class: "small", text: "What these numbers mean" }), legend));
    const flags = el("ul", { class: "flags" });
    const entries = Object.entries(b.flags || {});
    if (!entries.length) flags.append(el("li", { class: "none", text: "no flags raised" }));
    for (const [name, why] of entries) flags.append(el("li", {}, el("strong", { text: name }), why));
    box.append(flags);
    const tile = tileOf(b);
    if (tile) {
      const [x0, y0, x1, y1] = tile.map((v) => Math.round(v));
      box.append(el("div", { class: "badge-note", id: "badge-tile",
        text: `Graded on one native tile, x ${x0}–${x1}, y ${y0}–${y1} (the most fake-looking): these numbers are that tile's map.` }));
    }
    if (summary && summary.flat) {
      box.append(el("div", { class: "badge-note",
        text: tile ? "The map stitched from all tiles is flat: it shows no preferred region." : "This map is flat: it shows no preferred region." }));
    }
    box.append(el("div", { class: "badge-note", text: `views: ${(b.views || []).join(", ")}` }));
  }

  async function download(path, filename) {
    try {
      const res = await api(path);
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      setStatus(err.message, "error");
    }
  }

  $("report-link").addEventListener("click", (e) => {
    e.preventDefault();
    if (!state.analysis) return;
    setStatus("rendering the report…", "busy");
    download(state.analysis.links.report, `fakelens-report-${state.analysis.id}.html`).then(() => {
      if ($("status").classList.contains("busy")) setStatus("report downloaded");
    });
  });

  // ---------------------------------------------------------------- history
  async function loadHistory() {
    const list = $("history");
    if (!apiKey()) {
      historyGen += 1;  // a page still loading for the old key is dropped
      list.replaceChildren(el("li", { class: "empty-row", text: "enter an API key to see your analyses" }));
      return;
    }
    list.replaceChildren();
    await loadHistoryPage(list, null, ++historyGen);
  }

  // One page of the history appended to the list; a "more" row follows the page's cursor to the next one.
  // Each entry names its file, when it was analysed and its score: several "face.jpg" stay apart.
  const when = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? "" : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  };
  // Each (re)load of the list is a generation: a page that arrives after a newer load began (a second
  // refresh, another key) is dropped instead of appended twice or under the wrong key.
  let historyGen = 0;
  async function loadHistoryPage(list, before, gen) {
    try {
      const res = await api(`/v1/analyses?limit=15${before ? `&before=${encodeURIComponent(before)}` : ""}`);
      const page = await res.json();
      if (gen !== historyGen) return;
      if (!page.items.length && !before) list.append(el("li", { class: "empty-row", text: "no analyses yet" }));
      for (const a of page.items) {
        const name = a.image.filename || a.id;
        // a list item holding a real button: the list keeps its meaning for screen readers
        const open = el("button", { type: "button", class: "hitem" },
          el("span", { class: "hname", title: `${name} · ${a.created_at} · ${a.id}` },
            el("span", { text: name }),
            el("span", { class: "hwhen", text: `${when(a.created_at)} · p ${num(a.score, 2)}` })),
          // the short word here (the whole qualifier on hover): the name, time and score keep their room
          el("span", { class: `pill ${verdictClass(a)}`, text: a.blank ? "no verdict" : a.verdict, title: verdictText(a) }));
        open.addEventListener("click", () => show(a).then(revealResult).catch((err) => setStatus(err.message, "error")));
        list.append(el("li", { "data-id": a.id }, open));
      }
      if (page.next_before) {
        const older = el("button", { type: "button", class: "hitem", text: "older analyses…" });
        const more = el("li", { class: "more-row" }, older);
        older.addEventListener("click", () => { more.remove(); loadHistoryPage(list, page.next_before, gen); });
        list.append(more);
      }
    } catch (err) {
      if (gen === historyGen) list.append(el("li", { class: "empty-row", text: err.message }));
    }
  }
  $("refresh-history").addEventListener("click", loadHistory);

  loadInfo().then(updateButton);
  loadHistory();
})();
