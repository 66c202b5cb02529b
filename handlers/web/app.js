// Creature Generator page: calls GET /v1/generate on the same origin and shows the creature.
// Plain script, no build step; every piece of text from the server goes through textContent.
"use strict";

(() => {
  const TOKEN_KEY = "creature-generator.token";
  const HISTORY_MAX = 12;
  const MAX_SEED = 9223372036854775807n; // 2^63 - 1
  const RARITY_CLASSES = { F: "F", E: "E", D: "D", C: "C", B: "B", A: "A", S: "S", "S+": "Splus" };
  // The API's formats (?format=): media type, file extension, label. The card shows WebP, the lightest.
  const FORMATS = {
    png: { type: "image/png", extension: "png", label: "PNG" },
    webp: { type: "image/webp", extension: "webp", label: "WebP" },
    jpeg: { type: "image/jpeg", extension: "jpg", label: "JPEG" },
  };
  const SHOWN_FORMAT = "webp";

  const $ = (id) => document.getElementById(id);
  const form = $("generate-form");
  const seedInput = $("seed");
  const tokenInput = $("token");
  const button = $("generate");
  const alertBox = $("alert");
  const placeholder = $("placeholder");
  const card = $("card");
  const historyList = $("history");
  const historyEmpty = $("history-empty");
  const downloadForm = $("download-form");
  const downloadFormat = $("download-format");
  const downloadButton = $("download");
  const downloadStatus = $("download-status");

  const history = [];
  let current = null;
  let busy = false;
  let downloading = false;
  let cooldownUntil = 0;
  let cooldownTimer = null;

  // --- token: this tab's session storage only ---------------------------------------------------
  function readToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
  }
  function storeToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage disabled: the field still works for this page */ }
  }
  tokenInput.value = readToken();
  tokenInput.addEventListener("input", () => {
    tokenInput.removeAttribute("aria-invalid");
    storeToken(tokenInput.value.trim());
  });
  seedInput.addEventListener("input", () => seedInput.removeAttribute("aria-invalid"));

  // --- messages ----------------------------------------------------------------------------------
  function clearAlert() {
    alertBox.replaceChildren();
  }
  function showAlert(...parts) {
    alertBox.replaceChildren(...parts);
  }
  function retryButton() {
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => generate());
    return retry;
  }

  // A download in the format on show needs no request, so only the others wait for a rate-limit countdown.
  function downloadNeedsRequest() {
    return !current || downloadFormat.value !== current.format;
  }

  function updateButton() {
    const waiting = cooldownUntil > Date.now();
    button.disabled = busy || waiting;
    button.textContent = busy ? "Generating…" : "Generate";
    downloadButton.disabled = downloading || (waiting && downloadNeedsRequest());
    downloadButton.textContent = downloading ? "Downloading…" : "Download";
  }

  function startCooldown(seconds) {
    cooldownUntil = Date.now() + seconds * 1000;
    const count = document.createElement("span");
    count.setAttribute("aria-live", "off"); // announced once with the alert, not every second
    const tick = () => {
      const left = Math.ceil((cooldownUntil - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(cooldownTimer);
        cooldownTimer = null;
        cooldownUntil = 0;
        clearAlert();
        updateButton();
        return;
      }
      count.textContent = `Try again in ${left} s.`;
    };
    if (cooldownTimer) clearInterval(cooldownTimer);
    tick();
    showAlert("Too many requests from this browser. ", count);
    cooldownTimer = setInterval(tick, 250);
    updateButton();
  }

  function retryAfter(response) {
    const value = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    return Number.isFinite(value) && value > 0 ? Math.min(value, 3600) : 1;
  }

  async function apiMessage(response) {
    try {
      const body = await response.json();
      const message = body && body.error && body.error.message;
      return typeof message === "string" ? message : "";
    } catch {
      return "";
    }
  }

  async function showFailure(response) {
    const status = response.status;
    if (status === 401) {
      const hadToken = tokenInput.value.trim() !== "";
      showAlert(hadToken
        ? "The server did not accept this access token. Check it and press Generate again."
        : "This server needs an access token. Enter it in the “Access token” field, then press Generate again.");
      tokenInput.setAttribute("aria-invalid", "true");
      tokenInput.focus();
      tokenInput.select();
    } else if (status === 429) {
      startCooldown(retryAfter(response));
    } else if (status === 503) {
      const seconds = retryAfter(response);
      showAlert(`The service is warming up or busy. Please retry in about ${seconds} s.`, retryButton());
    } else if (status === 422) {
      const message = await apiMessage(response);
      showAlert(message || "The server refused this request.");
      seedInput.setAttribute("aria-invalid", "true");
      seedInput.focus();
    } else {
      const message = await apiMessage(response);
      showAlert(`Something went wrong (HTTP ${status}). ${message}`.trim(), " ", retryButton());
    }
  }

  // --- the creature card -------------------------------------------------------------------------
  function rarityClass(rarity) {
    return `badge rarity-${RARITY_CLASSES[rarity] || "F"}`;
  }

  function dataUrl(creature) {
    return `data:${FORMATS[creature.format].type};base64,${creature.imageBase64}`;
  }

  function kilobytes(bytes) {
    return `${(bytes / 1024).toFixed(1)} KB`;
  }

  function sizeText(creature) {
    const parts = [FORMATS[creature.format].label];
    if (creature.width && creature.height) parts.push(`${creature.width} × ${creature.height} px`);
    parts.push(kilobytes(creature.bytes));
    return parts.join(" · ");
  }

  function show(creature) {
    current = creature;
    const image = $("card-image");
    image.src = dataUrl(creature);
    image.alt = `${creature.name}, a creature of rarity ${creature.rarity}`;
    $("card-name").textContent = creature.name;
    const badge = $("card-rarity");
    badge.className = rarityClass(creature.rarity);
    badge.textContent = creature.rarity;
    $("card-id").textContent = creature.id;
    const time = $("card-time");
    time.dateTime = creature.generatedAt;
    const when = new Date(creature.generatedAt);
    time.textContent = Number.isNaN(when.getTime()) ? creature.generatedAt : when.toLocaleString();
    time.title = creature.generatedAt;
    $("card-name-source").textContent = creature.nameSource;
    $("card-seed").textContent = creature.seed;
    $("card-size").textContent = sizeText(creature);
    downloadStatus.textContent = "";
    placeholder.hidden = true;
    card.hidden = false;
    renderHistory();
    updateButton();
  }

  function renderHistory() {
    historyEmpty.hidden = history.length > 0;
    historyList.replaceChildren(...history.map((creature) => {
      const item = document.createElement("li");
      const thumb = document.createElement("button");
      thumb.type = "button";
      thumb.className = "thumb";
      thumb.setAttribute("aria-label", `Show ${creature.name} (rarity ${creature.rarity}) again`);
      if (creature === current) thumb.setAttribute("aria-current", "true");
      const image = document.createElement("img");
      image.src = dataUrl(creature);
      image.alt = "";
      image.width = 64;
      image.height = 64;
      const badge = document.createElement("span");
      badge.className = rarityClass(creature.rarity);
      badge.textContent = creature.rarity;
      badge.setAttribute("aria-hidden", "true");
      thumb.append(image, badge);
      thumb.addEventListener("click", () => show(creature));
      item.append(thumb);
      return item;
    }));
  }

  // The seed is a 63-bit integer: JSON numbers lose its last digits, so read it from the raw text.
  function parseCreature(text) {
    const body = JSON.parse(text);
    const meta = body && body.metadata;
    const fields = meta && [body.imageBase64, meta.id, meta.name, meta.rarity, meta.nameSource, body.generatedAt];
    if (!fields || !fields.every((value) => typeof value === "string")) throw new Error("unexpected answer");
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body.imageBase64)) throw new Error("unexpected image");
    const format = meta.imageFormat === undefined ? "png" : meta.imageFormat; // a server from before formats
    if (!Object.hasOwn(FORMATS, format)) throw new Error("unexpected image format");
    const seed = /"seed"\s*:\s*(\d+)/.exec(text);
    const padding = body.imageBase64.endsWith("==") ? 2 : body.imageBase64.endsWith("=") ? 1 : 0;
    return {
      imageBase64: body.imageBase64,
      format,
      width: Number.isInteger(meta.imageWidth) ? meta.imageWidth : 0,
      height: Number.isInteger(meta.imageHeight) ? meta.imageHeight : 0,
      bytes: (body.imageBase64.length / 4) * 3 - padding,
      id: meta.id,
      name: meta.name,
      rarity: meta.rarity,
      nameSource: meta.nameSource,
      seed: seed ? seed[1] : String(meta.seed),
      generatedAt: body.generatedAt,
    };
  }

  function validSeed(value) {
    if (!/^\d{1,19}$/.test(value)) return false;
    return BigInt(value) <= MAX_SEED;
  }

  function requestHeaders(accept) {
    const token = tokenInput.value.trim();
    const headers = { Accept: accept };
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  // --- generate ----------------------------------------------------------------------------------
  async function generate() {
    if (busy || cooldownUntil > Date.now()) return;
    const seed = seedInput.value.trim();
    if (seed && !validSeed(seed)) {
      showAlert("The seed must be a whole number from 0 to 9223372036854775807, or left empty for a random creature.");
      seedInput.setAttribute("aria-invalid", "true");
      seedInput.focus();
      return;
    }
    const headers = requestHeaders("application/json");
    const url = `/v1/generate?format=${SHOWN_FORMAT}${seed ? `&seed=${encodeURIComponent(seed)}` : ""}`;

    busy = true;
    updateButton();
    $("result").setAttribute("aria-busy", "true");
    try {
      let response;
      try {
        response = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
      } catch {
        showAlert("Could not reach the server: check your connection, then try again.", " ", retryButton());
        return;
      }
      if (!response.ok) {
        await showFailure(response);
        return;
      }
      let creature;
      try {
        creature = parseCreature(await response.text());
      } catch {
        showAlert("The server sent an answer this page cannot read. Please try again.", " ", retryButton());
        return;
      }
      clearAlert();
      tokenInput.removeAttribute("aria-invalid");
      history.unshift(creature);
      history.length = Math.min(history.length, HISTORY_MAX);
      show(creature);
    } finally {
      busy = false;
      $("result").removeAttribute("aria-busy");
      updateButton();
    }
  }

  // --- download ----------------------------------------------------------------------------------
  // `<name>-<id>.<ext>` in plain ASCII letters, digits, `-` and `_`: safe on every file system.
  function fileStem(text, fallback) {
    const stem = text
      .normalize("NFKD")
      .replace(/[\u0300-\u036f]/g, "") // accents off their letters: "é" -> "e"
      .replace(/['’]/g, "")
      .replace(/[^A-Za-z0-9_-]+/g, "-")
      .replace(/-{2,}/g, "-")
      .replace(/^[-_]+|[-_]+$/g, "")
      .slice(0, 48);
    return stem || fallback;
  }

  function fileName(creature, format) {
    return `${fileStem(creature.name, "creature")}-${fileStem(creature.id, "creature")}.${FORMATS[format].extension}`;
  }

  function base64Blob(base64, type) {
    const text = atob(base64);
    const bytes = new Uint8Array(text.length);
    for (let index = 0; index < text.length; index += 1) bytes[index] = text.charCodeAt(index);
    return new Blob([bytes], { type });
  }

  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000); // the browser has long read it by then
    downloadStatus.textContent = `Saved ${name} (${kilobytes(blob.size)}).`;
  }

  // The format on show is saved from the bytes in hand. Any other is the same creature fetched again by its
  // seed, as the image itself (Accept: image/...): seed, rarity and picture are the same, and the file is
  // named after the creature on show, whose name a language model may have given (seeded requests get the
  // server's own name for the seed).
  async function download() {
    const creature = current;
    if (!creature || downloading) return;
    const format = Object.hasOwn(FORMATS, downloadFormat.value) ? downloadFormat.value : "png";
    const name = fileName(creature, format);
    if (format === creature.format) {
      saveBlob(base64Blob(creature.imageBase64, FORMATS[format].type), name);
      return;
    }
    if (cooldownUntil > Date.now()) return;
    const url = `/v1/generate?seed=${encodeURIComponent(creature.seed)}&format=${format}`;
    downloading = true;
    downloadStatus.textContent = "";
    updateButton();
    try {
      let response;
      try {
        const headers = requestHeaders(FORMATS[format].type);
        response = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
      } catch {
        showAlert("Could not reach the server: check your connection, then try the download again.");
        return;
      }
      if (!response.ok) {
        await showFailure(response);
        return;
      }
      const type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
      if (type !== FORMATS[format].type || response.headers.get("X-Creature-Seed") !== creature.seed) {
        showAlert("The server sent an image this page did not ask for. Please try again.");
        return;
      }
      let blob;
      try {
        blob = await response.blob();
      } catch {
        showAlert("The download was interrupted. Please try again.");
        return;
      }
      clearAlert();
      saveBlob(blob, name);
    } finally {
      downloading = false;
      updateButton();
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    generate();
  });
  downloadForm.addEventListener("submit", (event) => {
    event.preventDefault();
    download();
  });
  downloadFormat.addEventListener("change", updateButton);
  renderHistory();
})();
