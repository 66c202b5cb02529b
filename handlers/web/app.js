// Creature Generator page: calls GET /v1/generate on the same origin and shows the creature.
// Plain script, no build step; every piece of text from the server goes through textContent.
"use strict";

(() => {
  const TOKEN_KEY = "creature-generator.token";
  const HISTORY_MAX = 12;
  const MAX_SEED = 9223372036854775807n; // 2^63 - 1
  const RARITY_CLASSES = { F: "F", E: "E", D: "D", C: "C", B: "B", A: "A", S: "S", "S+": "Splus" };

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

  const history = [];
  let current = null;
  let busy = false;
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

  function updateButton() {
    const waiting = cooldownUntil > Date.now();
    button.disabled = busy || waiting;
    button.textContent = busy ? "Generating…" : "Generate";
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

  function show(creature) {
    current = creature;
    const image = $("card-image");
    image.src = `data:image/png;base64,${creature.imageBase64}`;
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
    placeholder.hidden = true;
    card.hidden = false;
    renderHistory();
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
      image.src = `data:image/png;base64,${creature.imageBase64}`;
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
    const seed = /"seed"\s*:\s*(\d+)/.exec(text);
    return {
      imageBase64: body.imageBase64,
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
    const token = tokenInput.value.trim();
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const url = seed ? `/v1/generate?seed=${encodeURIComponent(seed)}` : "/v1/generate";

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

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    generate();
  });
  renderHistory();
})();
