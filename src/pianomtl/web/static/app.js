// pianomtl's page, a musician's workbench: open a recording, watch it being transcribed, then
// inspect the piano roll (hover a note, zoom in time and keys), correct it (select, move, resize,
// draw, delete, velocity, undo/redo; edits kept in this browser), practise with it (A–B loop,
// 50–100 % speed with the recording's pitch kept, hands coloured and muted, metronome on the
// beats), and download what is on the page. Live mode transcribes the microphone.
// Plain JS, no libraries, no build step; everything comes from the local server (see
// pianomtl/web/server.py for the API). Beats, hands and a score come from the server when it
// has them (payload fields "beats", "downbeats", a note's "hand", "score"); the page works
// without them (a split point for the hands, no metronome or snapping).
"use strict";

(() => {
  const MIN_KEY = 21, MAX_KEY = 108;
  const BLACK = new Set([1, 3, 6, 8, 10]);
  const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
  const KEYBOARD_W = 58, RULER_H = 22, PEDAL_H = 30, GAP = 6;
  const MIN_FIT_KEYS = 25;      // fit-to-range shows at least two octaves
  const FIT_MARGIN = 2;         // keys above and below the piece's range
  const EDGE_PX = 6;            // the grip at a note's end that resizes it
  const MIN_NOTE = 0.03;        // seconds: the shortest note an edit makes
  const DRAW_LENGTH = 0.25;     // seconds: a note drawn with a click, not a drag
  const SNAP_DIVISIONS = 4;     // the snapping grid: quarters of a beat
  const NUDGE = 0.01;           // seconds an arrow key moves a note without beats (shift: ×10)
  const HISTORY = 200;          // undo steps kept
  const STORE_KEY = "pianomtl.edits.v1", STORE_KEPT = 5;
  const SPEEDS = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1];
  const HAND_HUE = { L: 212, R: 8 };
  const $ = (id) => document.getElementById(id);
  const round4 = (t) => Math.round(t * 1e4) / 1e4;
  const keyName = (key) => `${NAMES[key % 12]}${Math.floor(key / 12) - 1}`;

  // Everything the page knows; exposed as window.pianomtl for tests and curious users.
  const state = {
    config: null,
    session: null, name: "", fileKey: "", notes: [], pedal: [], duration: 0, redecode: false,
    status: "idle", error: "", notice: "",
    view: { start: 0, pxPerSec: 100, low: MIN_KEY, high: MAX_KEY },
    position: 0, playing: false,
    drawnNotes: 0, draws: 0,
    live: null,               // {socket, notes, pedal, open: Map key → note, seconds}
    piano: { state: "none", engine: "", buffers: new Map(), keys: [] },
    threshold: null, defaultThreshold: null,
    selection: new Set(), tool: "select", hover: "",
    undo: [], redo: [], version: 0, baseVersion: 0,
    loop: { a: null, b: null, on: false }, loops: 0, speed: 1,
    hands: { colour: false, split: 60, mute: { L: false, R: false }, known: false },
    beats: [], downbeats: [], metronome: false, snap: true, clicks: 0, played: { L: 0, R: 0 },
    score: null, showScore: true, scoreState: "none",
    get edited() { return this.version !== this.baseVersion; },
  };
  window.pianomtl = state;

  const canvas = $("roll");
  const ctx2d = canvas.getContext("2d");
  const audioEl = $("original");
  let audio = null;           // {ctx, original, piano, click, source}
  let playback = null;        // {startPos, ctxStart, speed, next, nextBeat, timer, voices}
  let pollTimer = null, decodeTimer = null, decodePending = null, decodeBusy = false;
  let nextId = 1, versions = 0;

  // ------------------------------------------------------------------ messages and progress

  function showError(text) {
    state.error = text || "";
    const box = $("error");
    box.textContent = state.error;
    box.title = state.error;
    box.hidden = !state.error;
  }

  function showNotice(text) {
    state.notice = text || "";
    $("notice").textContent = state.notice;
    $("notice").hidden = !state.notice;
  }

  function showProgress(fraction, text) {
    $("progress").hidden = fraction === null;
    if (fraction !== null) {
      $("progress-fill").style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
      $("progress-text").textContent = text;
    }
  }

  // what the server says it is doing, in words that are true (a queue only when there is one)
  function stageText(status) {
    if (status.stage === "queued") {
      const ahead = status.ahead || 0;
      if (ahead > 0) return `Waiting for ${ahead} other recording${ahead > 1 ? "s" : ""} to be transcribed first`;
      return "Starting the transcription";
    }
    return {
      reading: "Reading the audio", network: "Listening with the network", decoding: "Finding notes and pedal",
      recording: "Listening",
    }[status.stage] || status.stage;
  }

  // ------------------------------------------------------------------ opening a recording

  const DOWNLOAD_LABELS = { mid: "MIDI", csv: "CSV", json: "JSON", musicxml: "MusicXML", pdf: "PDF", svg: "SVG" };

  async function loadConfig() {
    try {
      state.config = await (await fetch("/api/config")).json();
      $("formats").textContent =
        `${state.config.formats.join(" ")} … up to ${state.config.max_upload}; nothing leaves this computer.`;
      const accept = ["audio/*", ...state.config.formats].join(",");
      $("file").setAttribute("accept", accept);
      if (!state.config.live) $("live").hidden = true;
      for (const format of state.config.downloads || []) {  // every format the server writes (MusicXML …)
        if ($(`dl-${format.name}`)) continue;
        const link = document.createElement("a");
        link.id = `dl-${format.name}`;
        link.className = "button small";
        link.dataset.kind = format.name;
        link.href = "#";
        link.title = format.description || "";
        link.textContent = DOWNLOAD_LABELS[format.name] || format.name.toUpperCase();
        link.setAttribute("aria-disabled", "true");
        link.addEventListener("click", downloadClicked);
        $("downloads").append(link);
      }
      if (state.config.default_onset_threshold) {  // the real default, before anything is opened
        state.defaultThreshold = state.config.default_onset_threshold;
        if (state.threshold === null) showThreshold(state.defaultThreshold);
      }
    } catch (error) {
      showError("cannot reach the pianomtl server; is `pianomtl serve` still running?");
    }
  }

  function closeSession() {
    // a session with edits stays on the server (it expires there when idle): a reload finds it again
    if (state.session && !state.edited) navigator.sendBeacon(`/api/sessions/${state.session}/close`);
    state.session = null;
  }

  function openFile(file) {
    if (!file) return;
    stop();
    stopLive(false);
    showError("");
    showNotice("");
    const limit = state.config ? state.config.max_upload_bytes : Infinity;
    if (file.size > limit) {
      showError(`${file.name}: the file is larger than this server's upload limit of ${state.config.max_upload}`);
      return;
    }
    closeSession();
    setNotes([], [], 0, false);
    resetHistory();
    state.name = file.name;
    state.fileKey = `${file.name}|${file.size}`;
    $("name").textContent = file.name;
    state.status = "uploading";
    showProgress(0, `Uploading ${file.name}…`);
    const form = new FormData();
    form.append("audio", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/sessions");
    request.responseType = "json";
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) showProgress(0.1 * event.loaded / event.total, `Uploading ${file.name}…`);
    };
    request.onerror = () => failed("the upload failed: the server did not answer");
    request.onload = () => {
      const body = request.response || {};
      if (request.status !== 201) return failed(body.error || `the upload failed (HTTP ${request.status})`);
      follow(body.id, body.name);
    };
    request.send(form);
  }

  function failed(message) {
    if (!state.session) $("name").textContent = "";  // refused before it became a session
    state.status = "error";
    showProgress(null);
    showError(message);
  }

  function follow(id, name) {
    state.session = id;
    state.name = name;
    $("name").textContent = name;
    state.status = "queued";
    clearTimeout(pollTimer);
    poll();
  }

  async function poll() {
    const id = state.session;
    if (!id) return;
    let status;
    try {
      const response = await fetch(`/api/sessions/${id}`);
      status = await response.json();
      if (!response.ok) return failed(status.error);
    } catch (error) {
      return failed("lost the connection to the pianomtl server");
    }
    if (id !== state.session) return;
    state.status = status.state;
    if (status.state === "done") {
      showProgress(null);
      return loadNotes();
    }
    if (status.state === "error") return failed(status.error);
    showProgress(0.1 + 0.9 * status.progress, `${stageText(status)}… ${Math.round(status.progress * 100)}%`);
    pollTimer = setTimeout(poll, 250);
  }

  async function loadNotes() {
    const id = state.session;
    const response = await fetch(`/api/sessions/${id}/notes`);
    const data = await response.json();
    if (!response.ok) return failed(data.error);
    if (id !== state.session) return;
    audioEl.src = `/api/sessions/${id}/audio`;
    audioEl.dataset.fallback = "";
    if (!state.fileKey) state.fileKey = `session|${id}`;
    setNotes(data.notes, data.pedal, data.duration, data.redecode);
    resetHistory();
    takeMusic(data);
    if (data.default_onset_threshold) state.defaultThreshold = data.default_onset_threshold;
    showThreshold(data.decoder.onset_threshold);
    fitView();
    fitKeys();
    for (const link of document.querySelectorAll("#downloads a")) link.setAttribute("aria-disabled", "false");
    $("play").disabled = false;
    restoreEdits();
    state.status = "ready";
    loadPiano();  // in the background: ready by the time someone presses play
  }

  // beats, downbeats, hands and the score: from the server when it has them (the score module)
  function takeMusic(data) {
    state.beats = Array.isArray(data.beats) ? data.beats.slice().sort((a, b) => a - b) : [];
    state.downbeats = Array.isArray(data.downbeats) ? data.downbeats : [];
    state.hands.known = state.notes.some((n) => n.hand === "L" || n.hand === "R");
    $("split").disabled = state.hands.known;
    $("split").title = state.hands.known ? "the hands come from the score" : $("split").dataset.title;
    $("metronome").disabled = state.beats.length < 2;
    if (state.beats.length < 2) state.metronome = false;
    updateToggles();
    loadScore(data.score || null);
  }

  function asNote(n) {
    const note = { id: nextId++, key: n.key, onset: n.onset, offset: n.offset, velocity: n.velocity };
    if (n.hand === "L" || n.hand === "R") note.hand = n.hand;
    return note;
  }

  function setNotes(notes, pedal, duration, redecode) {
    state.notes = notes.map(asNote);
    sortNotes();
    state.pedal = pedal;
    state.duration = duration;
    state.redecode = redecode;
    state.selection.clear();
    $("sensitivity").disabled = !redecode;
    $("drop-hint").hidden = duration > 0 || state.live !== null;
    if (!duration) {
      for (const link of document.querySelectorAll("#downloads a")) link.setAttribute("aria-disabled", "true");
      $("play").disabled = true;
      state.position = 0;
      state.loop = { a: null, b: null, on: false };
    }
    notesChanged(false);
    updateScroll();
  }

  function sortNotes() {
    state.notes.sort((a, b) => a.onset - b.onset || a.key - b.key || a.id - b.id);
  }

  // ------------------------------------------------------------------ the sensitivity (the onset threshold, turned round)

  // Right means more notes: the slider's value is 1 − the decoder's onset threshold.
  function showThreshold(threshold) {
    state.threshold = threshold;
    $("sensitivity").value = (1 - threshold).toFixed(2);
    sensitivityLabel(threshold);
    if (state.defaultThreshold && !$("sensitivity-default").children.length) {
      const option = document.createElement("option");
      option.value = (1 - state.defaultThreshold).toFixed(2);
      $("sensitivity-default").append(option);
    }
  }

  function sensitivityLabel(threshold) {
    const atDefault = state.defaultThreshold !== null && Math.abs(threshold - state.defaultThreshold) < 1e-6;
    $("sensitivity-value").textContent = `${Math.round((1 - threshold) * 100)}${atDefault ? " (default)" : ""}`;
    $("sensitivity-group").title = "how readily a note is heard: right finds more notes (and more false ones), " +
      `left fewer (the decoder's onset threshold, now ${threshold.toFixed(2)}` +
      `${state.defaultThreshold ? `; default ${state.defaultThreshold.toFixed(2)}` : ""})`;
  }

  const sliderThreshold = () => Math.round((1 - Number($("sensitivity").value)) * 100) / 100;

  function sensitivityInput() {
    const value = sliderThreshold();
    sensitivityLabel(value);
    if (state.edited) return;  // asked on release ("change"), not on every step of a drag
    clearTimeout(decodeTimer);
    decodeTimer = setTimeout(() => redecode(value), 120);
  }

  function sensitivityChange() {
    if (!state.edited) return;
    const value = sliderThreshold();
    const ok = window.confirm(
      "Decoding again at this sensitivity replaces the notes on the page, your edits included " +
      "(Undo brings them back). Decode again?");
    if (!ok) { showThreshold(state.threshold); return; }
    redecode(value);
  }

  async function redecode(value) {
    if (!state.session || !state.redecode) return;
    if (decodeBusy) { decodePending = value; return; }
    decodeBusy = true;
    const id = state.session;
    try {
      const response = await fetch(`/api/sessions/${id}/decode`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ onset_threshold: value }),
      });
      const data = await response.json();
      if (!response.ok) showError(data.error);
      else if (id === state.session) {
        const before = snapshot();
        state.threshold = data.decoder.onset_threshold;
        sensitivityLabel(state.threshold);
        state.notes = data.notes.map(asNote);
        sortNotes();
        state.pedal = data.pedal;
        pushUndo(before);          // undo brings the notes (and the edits) from before back
        state.baseVersion = state.version;
        notesChanged();
      }
    } finally {
      decodeBusy = false;
      if (decodePending !== null) { const next = decodePending; decodePending = null; redecode(next); }
    }
  }

  // ------------------------------------------------------------------ editing: history, storage

  function snapshot() { return state.notes.map((n) => ({ ...n })); }

  function pushUndo(before) {
    state.undo.push({ notes: before, version: state.version });
    if (state.undo.length > HISTORY) state.undo.shift();
    state.redo = [];
    state.version = ++versions;
  }

  function resetHistory() {
    state.undo = [];
    state.redo = [];
    state.version = state.baseVersion = ++versions;
    updateHistoryButtons();
  }

  // one undoable step: ``change`` mutates state.notes
  function edit(change) {
    const before = snapshot();
    change();
    pushUndo(before);
    notesChanged();
  }

  function undo() { travel(state.undo, state.redo); }
  function redo() { travel(state.redo, state.undo); }

  function travel(from, to) {
    if (!from.length || state.live) return;
    to.push({ notes: snapshot(), version: state.version });
    const step = from.pop();
    state.notes = step.notes;
    state.version = step.version;
    notesChanged();
  }

  function updateHistoryButtons() {
    $("undo").disabled = !state.undo.length;
    $("redo").disabled = !state.redo.length;
  }

  // after any change of the notes: order, selection, the count, storage, playback, the picture
  function notesChanged(store = true) {
    sortNotes();
    const ids = new Set(state.notes.map((n) => n.id));
    for (const id of state.selection) if (!ids.has(id)) state.selection.delete(id);
    $("count").textContent = state.duration ? `${state.notes.length} notes${state.edited ? " (edited)" : ""}` : "";
    updateHistoryButtons();
    updateInspector();
    if (store) { saveEdits(); scoreLater(); }
    if (playback) playback.next = firstNoteAfter(position());
    requestDraw();
  }

  function readStore() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY) || "{}") || {}; } catch (error) { return {}; }
  }

  // The edits live in this browser's local storage, by recording (name and size), and nowhere else.
  function saveEdits() {
    if (!state.fileKey || !state.duration || state.live) return;
    const all = readStore();
    if (!state.edited) delete all[state.fileKey];
    else {
      all[state.fileKey] = {
        name: state.name, session: state.session, threshold: state.threshold, saved: Date.now(),
        notes: state.notes.map((n) => [n.key, +n.onset.toFixed(4), +n.offset.toFixed(4), n.velocity, n.hand || ""]),
      };
      const keys = Object.keys(all).sort((a, b) => all[b].saved - all[a].saved);
      for (const key of keys.slice(STORE_KEPT)) delete all[key];
    }
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(all));
      localStorage.setItem(`${STORE_KEY}.last`, state.fileKey);
    } catch (error) {
      showError("this browser would not keep the edits (its local storage is full or turned off)");
    }
  }

  // the same recording opened again (or the page reloaded): its kept edits come back, undoably
  function restoreEdits() {
    const work = readStore()[state.fileKey];
    if (!work || !Array.isArray(work.notes)) return;
    const before = snapshot();
    state.notes = work.notes.map(([key, onset, offset, velocity, hand]) =>
      asNote({ key, onset, offset, velocity, hand }));
    pushUndo(before);
    if (typeof work.threshold === "number") showThreshold(work.threshold);
    notesChanged();
    const when = new Date(work.saved).toLocaleString();
    showNotice(`Your edits to ${work.name} (kept in this browser since ${when}) are back. Undo discards them.`);
  }

  async function resume() {
    const last = localStorage.getItem(`${STORE_KEY}.last`);
    const work = last && readStore()[last];
    if (!work) return;
    try {  // a reload: the server still has the recording
      const response = await fetch(`/api/sessions/${work.session}`);
      if (response.ok && (await response.json()).state === "done" && !state.session) {
        state.fileKey = last;
        follow(work.session, work.name);
        return;
      }
    } catch (error) { /* the server is gone: say where the edits are */ }
    showNotice(`Your edits to ${work.name} are kept in this browser: open ${work.name} again to go on with them.`);
  }

  // ------------------------------------------------------------------ downloads: what is on the page

  // what the page sends to build a download or the score (only then: the edits live in this browser)
  function pageNotes() {
    return {
      notes: state.notes.map((n) => ({ key: n.key, onset: n.onset, offset: n.offset, velocity: n.velocity })),
      pedal: state.pedal,
    };
  }

  async function downloadClicked(event) {
    event.preventDefault();
    const link = event.currentTarget;
    if (link.getAttribute("aria-disabled") === "true" || !state.session) return;
    const kind = link.dataset.kind;
    let response;
    link.classList.add("busy");
    try {
      response = await fetch(`/api/sessions/${state.session}/download/${kind}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(pageNotes()),
      });
    } catch (error) {
      return showError("the download failed: the pianomtl server did not answer");
    } finally {
      link.classList.remove("busy");
    }
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      return showError(data.error || `the download failed (HTTP ${response.status})`);
    }
    const match = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
    const name = match ? match[1] : `${state.name.replace(/\.[^.]*$/, "") || "recording"}.${kind}`;
    const url = URL.createObjectURL(await response.blob());
    const anchor = document.createElement("a");
    anchor.href = url;
    anchor.download = name;
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    state.downloads = (state.downloads || 0) + 1;
  }

  // ------------------------------------------------------------------ geometry

  function layout() {
    const width = canvas.clientWidth, height = canvas.clientHeight;
    const rollTop = RULER_H, rollH = Math.max(60, height - RULER_H - PEDAL_H - GAP);
    const rows = state.view.high - state.view.low + 1;
    return {
      width, height, rollLeft: KEYBOARD_W, rollW: Math.max(10, width - KEYBOARD_W), rollTop, rollH,
      rows, keyH: rollH / rows, pedalTop: rollTop + rollH + GAP,
    };
  }

  const xOf = (g, t) => g.rollLeft + (t - state.view.start) * state.view.pxPerSec;
  const tOf = (g, x) => state.view.start + (x - g.rollLeft) / state.view.pxPerSec;
  const yOf = (g, key) => g.rollTop + (state.view.high - key) * g.keyH;
  const keyAt = (g, y) => state.view.high - Math.floor((y - g.rollTop) / g.keyH);
  const clampKey = (key) => Math.max(MIN_KEY, Math.min(MAX_KEY, key));

  function visibleSeconds() { return layout().rollW / state.view.pxPerSec; }

  function regionAt(g, x, y) {
    if (y < RULER_H) return x >= g.rollLeft ? "ruler" : null;
    if (y < g.rollTop + g.rollH) return x >= g.rollLeft ? "roll" : "keys";
    if (y >= g.pedalTop && y <= g.pedalTop + PEDAL_H && x >= g.rollLeft) return "pedal";
    return null;
  }

  // the topmost note under (x, y), drawn last = latest onset first
  function noteAt(g, x, y) {
    const key = keyAt(g, y), t = tOf(g, x), slack = 2 / state.view.pxPerSec;
    for (let i = state.notes.length - 1; i >= 0; i--) {
      const n = state.notes[i];
      if (n.key === key && n.onset - slack <= t && t <= Math.max(n.offset, n.onset + 2 / state.view.pxPerSec) + slack) {
        return n;
      }
    }
    return null;
  }

  // where a note is drawn, in CSS pixels of the canvas (for tests and the tooltip)
  function noteBox(id) {
    const n = state.notes.find((note) => note.id === id);
    if (!n) return null;
    const g = layout();
    const x = xOf(g, n.onset);
    return { x, y: yOf(g, n.key), w: Math.max(xOf(g, n.offset), x + 2) - x, h: g.keyH };
  }

  function handOf(note) {
    return note.hand || (note.key < state.hands.split ? "L" : "R");
  }

  // ------------------------------------------------------------------ the beat grid

  // the nearest point of the grid (quarters of a beat) when snapping and the beats are known
  // (times an edit makes are kept to 0.1 ms, as the server writes them and this browser stores them)
  function snapTime(t, free) {
    const beats = state.beats;
    if (free || !state.snap || beats.length < 2) return round4(Math.max(0, t));
    let low = 0, high = beats.length - 1;
    while (high - low > 1) { const mid = (low + high) >> 1; if (beats[mid] <= t) low = mid; else high = mid; }
    const period = beats[high] - beats[low];
    const origin = t < beats[0] ? beats[0] : beats[low];
    const step = period / SNAP_DIVISIONS;
    return round4(Math.max(0, origin + Math.round((t - origin) / step) * step));
  }

  function gridStep(t) {
    const beats = state.beats;
    if (beats.length < 2) return NUDGE;
    const i = Math.max(0, Math.min(beats.length - 2, beats.findIndex((b) => b > t) - 1));
    return (beats[i + 1] - beats[i]) / SNAP_DIVISIONS;
  }

  // ------------------------------------------------------------------ drawing

  function velocityColour(velocity, alpha) {
    const v = Math.max(1, Math.min(127, velocity)) / 127;   // soft: pale amber, loud: deep crimson
    const hue = (45 - 57 * v + 360) % 360, light = 70 - 34 * v;
    return `hsla(${hue.toFixed(0)}, 85%, ${light.toFixed(0)}%, ${alpha})`;
  }

  function noteColour(note, alpha) {
    if (!state.hands.colour) return velocityColour(note.velocity, alpha);
    const v = Math.max(1, Math.min(127, note.velocity)) / 127;
    return `hsla(${HAND_HUE[handOf(note)]}, 75%, ${(68 - 30 * v).toFixed(0)}%, ${alpha})`;
  }

  function tickStep(pxPerSec) {
    for (const step of [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600]) {
      if (step * pxPerSec >= 70) return step;
    }
    return 1200;
  }

  function clock(seconds) {
    const minutes = Math.floor(seconds / 60);
    return `${minutes}:${(seconds - 60 * minutes).toFixed(1).padStart(4, "0")}`;
  }

  function draw() {
    const ratio = window.devicePixelRatio || 1;
    const g = layout();
    if (canvas.width !== Math.round(g.width * ratio) || canvas.height !== Math.round(g.height * ratio)) {
      canvas.width = Math.round(g.width * ratio);
      canvas.height = Math.round(g.height * ratio);
    }
    const c = ctx2d;
    c.setTransform(ratio, 0, 0, ratio, 0, 0);
    c.clearRect(0, 0, g.width, g.height);
    const sounding = new Map();  // key → note under the playhead
    const low = state.view.low, high = state.view.high;

    // lanes: black keys' rows shaded, a line between white keys, a darker one under every C
    c.fillStyle = "#ffffff";
    c.fillRect(g.rollLeft, g.rollTop, g.rollW, g.rollH);
    for (let key = low; key <= high; key++) {
      const y = yOf(g, key), pc = key % 12;
      if (BLACK.has(pc)) { c.fillStyle = "#f1f2f5"; c.fillRect(g.rollLeft, y, g.rollW, g.keyH); }
      if (pc === 0) { c.fillStyle = "#c4cad3"; c.fillRect(g.rollLeft, y + g.keyH - 0.5, g.rollW, 1); }
      else if (pc === 5 && g.keyH >= 3) {  // E|F: white keys side by side (B|C is the C line)
        c.fillStyle = "#e4e7ec"; c.fillRect(g.rollLeft, y + g.keyH - 0.5, g.rollW, 1);
      }
    }

    // time grid (the beats when known, else seconds) and ruler
    c.font = "11px system-ui, sans-serif";
    c.textBaseline = "middle";
    c.fillStyle = "#fafafa";
    c.fillRect(g.rollLeft, 0, g.rollW, RULER_H);
    const t0 = state.view.start, t1 = tOf(g, g.width);
    if (state.beats.length > 1) {
      const downbeats = new Set(state.downbeats.map((t) => t.toFixed(3)));
      for (const beat of state.beats) {
        if (beat < t0 || beat > t1) continue;
        const x = Math.round(xOf(g, beat)) + 0.5, down = downbeats.has(beat.toFixed(3));
        c.fillStyle = down ? "#c9ced6" : "#eceef2";
        c.fillRect(x, g.rollTop, 1, g.rollH);
      }
    }
    const step = tickStep(state.view.pxPerSec);
    for (let t = Math.floor(t0 / step) * step; t <= t1; t += step) {
      const x = Math.round(xOf(g, t)) + 0.5;
      if (x < g.rollLeft) continue;
      if (state.beats.length < 2) { c.fillStyle = "#e6e8ec"; c.fillRect(x, g.rollTop, 1, g.rollH); }
      c.fillStyle = "#98a2b3";
      c.fillRect(x, RULER_H - 6, 1, 6);
      c.fillStyle = "#475467";
      c.fillText(step < 1 ? `${t.toFixed(step < 0.1 ? 2 : 1)} s` : clock(t).replace(/\.0$/, ""), x + 3, RULER_H / 2 - 1);
    }
    if (state.duration > 0) {  // past the end of the recording
      const end = xOf(g, state.duration);
      if (end < g.width) { c.fillStyle = "rgba(0,0,0,0.04)"; c.fillRect(end, g.rollTop, g.width - end, g.rollH); }
    }
    const loop = state.loop;
    if (loop.a !== null && loop.b !== null) {  // the A–B loop on the ruler and over the roll
      const xa = Math.max(g.rollLeft, xOf(g, loop.a)), xb = Math.min(g.width, xOf(g, loop.b));
      if (xb > xa) {
        c.fillStyle = loop.on ? "rgba(46, 144, 250, 0.35)" : "rgba(152, 162, 179, 0.3)";
        c.fillRect(xa, 0, xb - xa, RULER_H);
        c.fillStyle = loop.on ? "rgba(46, 144, 250, 0.07)" : "rgba(152, 162, 179, 0.06)";
        c.fillRect(xa, g.rollTop, xb - xa, g.rollH);
      }
    }

    // notes
    const liveNow = state.live ? state.live.seconds : 0;
    const notes = state.live ? state.live.notes : state.notes;
    const playing = state.live ? liveNow : state.position;
    let drawn = 0;
    c.save();
    c.beginPath();
    c.rect(g.rollLeft, g.rollTop, g.rollW, g.rollH);
    c.clip();
    for (const note of notes) {
      const offset = note.offset === null ? Math.max(liveNow, note.onset + 0.02) : note.offset;
      if (offset < t0 || note.onset > t1) continue;
      if (note.onset <= playing && playing < offset) sounding.set(note.key, note);
      if (note.key < low || note.key > high) continue;
      const x0 = xOf(g, note.onset), x1 = Math.max(xOf(g, offset), x0 + 2);
      const y = yOf(g, note.key);
      const muted = !state.live && state.hands.mute[handOf(note)];
      c.fillStyle = noteColour(note, (muted ? 0.25 : 0.45) + (muted ? 0.15 : 0.55) * note.velocity / 127);
      c.fillRect(x0, y + 0.5, x1 - x0, Math.max(1, g.keyH - 1));
      c.lineWidth = 1;
      c.strokeStyle = noteColour(note, muted ? 0.5 : 1);
      if (g.keyH >= 4) c.strokeRect(x0 + 0.5, y + 1, x1 - x0 - 1, g.keyH - 2);
      if (state.selection.has(note.id)) {
        c.lineWidth = 2;
        c.strokeStyle = "#101828";
        c.strokeRect(x0 + 1, y + 1, Math.max(1, x1 - x0 - 2), Math.max(1, g.keyH - 2));
      }
      drawn++;
    }
    if (gesture && gesture.kind === "box" && gesture.moved) {
      c.setLineDash([4, 3]);
      c.lineWidth = 1;
      c.strokeStyle = "#344054";
      c.fillStyle = "rgba(52, 64, 84, 0.06)";
      const bx = Math.min(gesture.x0, gesture.x1), by = Math.min(gesture.y0, gesture.y1);
      c.fillRect(bx, by, Math.abs(gesture.x1 - gesture.x0), Math.abs(gesture.y1 - gesture.y0));
      c.strokeRect(bx + 0.5, by + 0.5, Math.abs(gesture.x1 - gesture.x0), Math.abs(gesture.y1 - gesture.y0));
      c.setLineDash([]);
    }
    c.restore();
    state.drawnNotes = drawn;
    state.draws++;
    canvas.dataset.notesDrawn = String(drawn);

    // keyboard: white keys full width, black keys shorter; every C named; sounding keys lit
    c.save();
    c.beginPath();
    c.rect(0, g.rollTop, KEYBOARD_W, g.rollH);
    c.clip();
    c.fillStyle = "#ffffff";
    c.fillRect(0, g.rollTop, KEYBOARD_W, g.rollH);
    for (let key = low; key <= high; key++) {
      if (BLACK.has(key % 12)) continue;
      const y = yOf(g, key), lit = sounding.get(key);
      if (lit) { c.fillStyle = noteColour(lit, 0.8); c.fillRect(0, y, KEYBOARD_W, g.keyH); }
      // the white key's lower edge: half a black row further down when a black key sits below it
      const below = BLACK.has((key + 11) % 12) ? g.keyH / 2 : 0;
      c.fillStyle = "#c9ced6";
      c.fillRect(0, y + g.keyH + below - 0.5, KEYBOARD_W, 0.8);
    }
    for (let key = low; key <= high; key++) {
      if (!BLACK.has(key % 12)) continue;
      const y = yOf(g, key), lit = sounding.get(key);
      c.fillStyle = lit ? noteColour(lit, 1) : "#1f242c";
      c.fillRect(0, y, KEYBOARD_W * 0.6, g.keyH);
    }
    c.fillStyle = "#475467";
    c.font = `${Math.min(11, Math.max(8, g.keyH * 1.2)).toFixed(0)}px system-ui, sans-serif`;
    for (let key = Math.ceil(low / 12) * 12; key <= high; key += 12) {
      c.fillText(keyName(key), KEYBOARD_W - 24, yOf(g, key) + g.keyH / 2);
    }
    c.restore();
    c.fillStyle = "#98a2b3";
    c.fillRect(KEYBOARD_W - 1, g.rollTop, 1, g.rollH);

    // legend above the keyboard: soft → loud (or the hands)
    if (state.hands.colour) {
      c.font = "9px system-ui, sans-serif";
      c.fillStyle = noteColour({ key: MIN_KEY, hand: "L", velocity: 90 }, 1);
      c.fillText("left", 4, 8);
      c.fillStyle = noteColour({ key: MAX_KEY, hand: "R", velocity: 90 }, 1);
      c.fillText("right", 26, 8);
    } else {
      for (let i = 0; i < 40; i++) {
        c.fillStyle = velocityColour(1 + 126 * i / 39, 1);
        c.fillRect(6 + i, 3, 1, 6);
      }
      c.fillStyle = "#667085";
      c.font = "9px system-ui, sans-serif";
      c.fillText("velocity", 6, 15);
    }

    // the sustain pedal band
    const pedal = state.live ? state.live.pedal : state.pedal;
    c.fillStyle = "#fafafa";
    c.fillRect(g.rollLeft, g.pedalTop, g.rollW, PEDAL_H);
    c.fillStyle = "#667085";
    c.font = "11px system-ui, sans-serif";
    c.fillText("pedal", 8, g.pedalTop + PEDAL_H / 2);
    c.save();
    c.beginPath();
    c.rect(g.rollLeft, g.pedalTop, g.rollW, PEDAL_H);
    c.clip();
    c.fillStyle = "rgba(73, 110, 160, 0.55)";
    const end = state.live ? liveNow : Math.max(state.duration, t1);
    for (let i = 0; i < pedal.length; i++) {
      const value = pedal[i].value;
      if (value <= 0) continue;
      const next = i + 1 < pedal.length ? pedal[i + 1].time : end;
      const x0 = xOf(g, pedal[i].time), x1 = xOf(g, next);
      const h = (PEDAL_H - 4) * value / 127;
      c.fillRect(x0, g.pedalTop + PEDAL_H - 2 - h, Math.max(1, x1 - x0), h);
    }
    c.restore();
    c.strokeStyle = "#d0d5dd";
    c.lineWidth = 1;
    c.strokeRect(g.rollLeft + 0.5, g.pedalTop + 0.5, g.rollW - 1, PEDAL_H - 1);

    // playhead
    const x = xOf(g, playing);
    if (x >= g.rollLeft && x <= g.width) {
      c.fillStyle = "#d92d20";
      c.fillRect(Math.round(x) - 1, 0, 2, g.pedalTop + PEDAL_H);
    }
    $("time").textContent = `${clock(playing)} / ${clock(state.live ? liveNow : state.duration)}`;
    scorePlayhead(playing);
  }

  let drawQueued = false;
  function requestDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }

  // ------------------------------------------------------------------ zoom and scroll, in time and in keys

  function clampView() {
    const span = visibleSeconds();
    const length = Math.max(state.duration, state.live ? state.live.seconds : 0);
    state.view.start = Math.max(0, Math.min(state.view.start, Math.max(0, length - span * 0.9)));
  }

  function fitView() {
    const g = layout();
    state.view.pxPerSec = g.rollW / Math.max(state.duration, 1) * 0.98;
    state.view.start = 0;
    updateScroll();
    requestDraw();
  }

  function zoom(factor, atX) {
    const g = layout();
    const x = atX === undefined ? g.rollLeft + g.rollW / 2 : atX;
    const t = tOf(g, x);
    const least = g.rollW / Math.max(state.duration, 1) * 0.5;
    state.view.pxPerSec = Math.max(least, Math.min(3000, state.view.pxPerSec * factor));
    state.view.start = t - (x - g.rollLeft) / state.view.pxPerSec;
    clampView();
    updateScroll();
    requestDraw();
  }

  function setKeys(low, high) {
    const rows = Math.max(12, Math.min(88, high - low + 1));
    low = Math.max(MIN_KEY, Math.min(MAX_KEY - rows + 1, low));
    state.view.low = low;
    state.view.high = low + rows - 1;
    requestDraw();
  }

  // the piece's range of keys (at least two octaves), the way a musician reads it
  function fitKeys() {
    if (!state.notes.length) return setKeys(MIN_KEY, MAX_KEY);
    let low = MAX_KEY, high = MIN_KEY;
    for (const n of state.notes) { low = Math.min(low, n.key); high = Math.max(high, n.key); }
    low -= FIT_MARGIN; high += FIT_MARGIN;
    const missing = MIN_FIT_KEYS - (high - low + 1);
    if (missing > 0) { low -= Math.floor(missing / 2); high += Math.ceil(missing / 2); }
    setKeys(low, high);
  }

  function zoomKeys(factor, atKey) {
    const rows = state.view.high - state.view.low + 1;
    const wanted = Math.round(Math.max(12, Math.min(88, rows / factor)));
    const centre = atKey === undefined ? (state.view.low + state.view.high) / 2 : atKey;
    const share = (centre - state.view.low) / rows;
    setKeys(Math.round(centre - share * wanted), Math.round(centre - share * wanted) + wanted - 1);
  }

  function scrollKeys(keys) {
    const rows = state.view.high - state.view.low + 1;
    setKeys(state.view.low + keys, state.view.low + keys + rows - 1);
  }

  function updateScroll() {
    const scroll = $("scroll");
    const max = Math.max(0, state.duration - visibleSeconds() * 0.9);
    scroll.max = max.toFixed(2);
    scroll.value = state.view.start.toFixed(2);
    scroll.disabled = max <= 0;
  }

  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const g = layout();
    if (event.ctrlKey || event.metaKey) {
      zoom(Math.exp(-event.deltaY * 0.002), event.offsetX);
    } else if (event.altKey) {
      zoomKeys(Math.exp(-event.deltaY * 0.002), keyAt(g, event.offsetY));
    } else if (event.shiftKey) {
      scrollKeys(-Math.sign(event.deltaY || event.deltaX) * 2);
    } else {
      const delta = Math.abs(event.deltaX) > Math.abs(event.deltaY) ? event.deltaX : event.deltaY;
      state.view.start += delta / state.view.pxPerSec;
      clampView();
      updateScroll();
      requestDraw();
    }
  }, { passive: false });

  // ------------------------------------------------------------------ the pointer: inspect, select, edit, loop

  let gesture = null;

  function pointerAt(event) { return { x: event.offsetX, y: event.offsetY }; }

  canvas.addEventListener("pointerdown", (event) => {
    if (state.live || !state.duration) { gesture = null; return; }
    const g = layout(), { x, y } = pointerAt(event);
    const region = regionAt(g, x, y);
    canvas.setPointerCapture(event.pointerId);
    canvas.focus({ preventScroll: true });
    if (event.button === 1) { gesture = { kind: "pan", x0: x, start: state.view.start }; return; }
    if (region === "ruler") { gesture = { kind: "ruler", x0: x, t0: tOf(g, x), moved: false }; return; }
    if (region !== "roll") { gesture = null; return; }
    const hit = noteAt(g, x, y);
    if (hit) {
      if (event.shiftKey) {  // shift: add to or take from the selection
        if (state.selection.has(hit.id)) state.selection.delete(hit.id); else state.selection.add(hit.id);
        gesture = null;
        updateInspector();
        requestDraw();
        return;
      }
      if (!state.selection.has(hit.id)) { state.selection.clear(); state.selection.add(hit.id); }
      const grip = xOf(g, hit.offset) - x <= EDGE_PX && xOf(g, hit.offset) - xOf(g, hit.onset) > 2 * EDGE_PX;
      gesture = {
        kind: event.altKey ? "velocity" : grip ? "resize" : "move", x0: x, y0: y, hit, moved: false,
        before: snapshot(), originals: new Map(state.notes.filter((n) => state.selection.has(n.id)).map((n) => [n.id, { ...n }])),
      };
      showTip(hit, x, y);
      updateInspector();
      requestDraw();
      return;
    }
    if (state.tool === "draw") {  // a new note from here to where the pointer is let go
      const onset = snapTime(tOf(g, x), event.altKey);
      const note = asNote({ key: clampKey(keyAt(g, y)), onset, offset: round4(onset + DRAW_LENGTH), velocity: drawVelocity() });
      gesture = { kind: "draw", x0: x, y0: y, note, before: snapshot(), moved: false };
      state.notes.push(note);
      state.selection.clear();
      state.selection.add(note.id);
      requestDraw();
      return;
    }
    gesture = { kind: "box", x0: x, y0: y, x1: x, y1: y, add: event.shiftKey, base: new Set(state.selection), moved: false };
  });

  canvas.addEventListener("pointermove", (event) => {
    const g = layout(), { x, y } = pointerAt(event);
    if (!gesture) return hover(g, x, y);
    const dx = x - gesture.x0, dy = y - (gesture.y0 || 0);
    const slop = event.pointerType === "touch" ? 10 : 3;  // a tap that shows a note's info must not move it
    if (Math.abs(dx) > slop || Math.abs(dy) > slop) gesture.moved = true;
    if (!gesture.moved) return;
    const free = event.altKey;
    if (gesture.kind === "pan") {
      state.view.start = gesture.start - dx / state.view.pxPerSec;
      clampView();
      updateScroll();
    } else if (gesture.kind === "ruler") {
      const t = Math.max(0, Math.min(state.duration, tOf(g, x)));
      state.loop = { a: Math.min(gesture.t0, t), b: Math.max(gesture.t0, t), on: true };
      updateToggles();
    } else if (gesture.kind === "box") {
      gesture.x1 = x; gesture.y1 = y;
      const ta = tOf(g, Math.min(gesture.x0, x)), tb = tOf(g, Math.max(gesture.x0, x));
      const ka = keyAt(g, Math.max(gesture.y0, y)), kb = keyAt(g, Math.min(gesture.y0, y));
      state.selection = new Set(gesture.add ? gesture.base : []);
      for (const n of state.notes) if (n.key >= ka && n.key <= kb && n.offset >= ta && n.onset <= tb) state.selection.add(n.id);
      updateInspector();
    } else if (gesture.kind === "draw") {
      gesture.note.offset = round4(Math.max(gesture.note.onset + MIN_NOTE, snapTime(tOf(g, x), free)));
      showTip(gesture.note, x, y);
    } else {
      dragNotes(g, gesture, dx, dy, free);
      showTip(gesture.hit, x, y);
    }
    requestDraw();
  });

  function dragNotes(g, drag, dx, dy, free) {
    const originals = drag.originals, first = originals.get(drag.hit.id);
    const byId = new Map(state.notes.map((n) => [n.id, n]));
    if (drag.kind === "move") {
      // a drag straight up or down keeps the time (no snapping of a note only moved in pitch)
      let shift = Math.abs(dx) < 4 ? 0 : snapTime(first.onset + dx / state.view.pxPerSec, free) - first.onset;
      let keys = -Math.round(dy / g.keyH);
      let lowest = Infinity, lowKey = MAX_KEY, highKey = MIN_KEY;
      for (const o of originals.values()) {
        lowest = Math.min(lowest, o.onset); lowKey = Math.min(lowKey, o.key); highKey = Math.max(highKey, o.key);
      }
      shift = Math.max(shift, -lowest);
      keys = Math.max(MIN_KEY - lowKey, Math.min(MAX_KEY - highKey, keys));
      for (const [id, o] of originals) {
        const n = byId.get(id);
        if (!n) continue;
        n.onset = round4(o.onset + shift); n.offset = round4(o.offset + shift); n.key = o.key + keys;
      }
    } else if (drag.kind === "resize") {
      const stretch = snapTime(first.offset + dx / state.view.pxPerSec, free) - first.offset;
      for (const [id, o] of originals) {
        const n = byId.get(id);
        if (n) n.offset = round4(Math.max(o.onset + MIN_NOTE, o.offset + stretch));
      }
    } else if (drag.kind === "velocity") {
      const change = -Math.round(dy / 2);
      for (const [id, o] of originals) {
        const n = byId.get(id);
        if (n) n.velocity = Math.max(1, Math.min(127, o.velocity + change));
      }
      updateInspector();
    }
  }

  canvas.addEventListener("pointerup", (event) => {
    const drag = gesture;
    gesture = null;
    if (!drag) return;
    const g = layout(), { x } = pointerAt(event);
    if (drag.kind === "draw") {
      pushUndo(drag.before);
      notesChanged();
    } else if (drag.kind === "move" || drag.kind === "resize" || drag.kind === "velocity") {
      const changed = drag.moved && state.notes.some((n) => {
        const o = drag.originals.get(n.id);
        return o && (o.onset !== n.onset || o.offset !== n.offset || o.key !== n.key || o.velocity !== n.velocity);
      });
      if (changed) { pushUndo(drag.before); notesChanged(); }
    } else if ((drag.kind === "box" || drag.kind === "ruler") && !drag.moved) {  // a click: the playhead goes there
      if (drag.kind === "box" && !drag.add) state.selection.clear();
      updateInspector();
      seek(Math.max(0, Math.min(state.duration, tOf(g, x))));
    }
    requestDraw();
  });

  canvas.addEventListener("pointercancel", () => {
    if (gesture && gesture.before) { state.notes = gesture.before; notesChanged(false); }
    gesture = null;
  });

  canvas.addEventListener("pointerleave", (event) => {  // (a finger lifted: the tapped note's info stays)
    if (!gesture && event.pointerType !== "touch") hideTip();
  });

  function noteInfo(n) {
    const hand = state.hands.colour || state.hands.known ? ` · ${handOf(n) === "L" ? "left" : "right"} hand` : "";
    return `${keyName(n.key)} · onset ${n.onset.toFixed(3)} s · ${(n.offset - n.onset).toFixed(3)} s long · ` +
      `velocity ${n.velocity}${hand}`;
  }

  function pedalAt(t) {
    let value = 0, since = 0;
    for (const p of state.pedal) { if (p.time > t) break; value = p.value; since = p.time; }
    return { value, since };
  }

  function hover(g, x, y) {
    const region = regionAt(g, x, y);
    let cursor = "default";
    if (region === "roll" && state.duration) {
      const n = noteAt(g, x, y);
      if (n) {
        const grip = xOf(g, n.offset) - x <= EDGE_PX && xOf(g, n.offset) - xOf(g, n.onset) > 2 * EDGE_PX;
        cursor = grip ? "ew-resize" : "move";
        showTip(n, x, y);
      } else {
        cursor = state.tool === "draw" ? "copy" : "crosshair";
        hideTip();
      }
    } else if (region === "pedal" && state.duration) {
      const t = tOf(g, x), p = pedalAt(t);
      setTip(`sustain pedal (CC64) ${p.value} at ${t.toFixed(2)} s${p.value ? ` · down since ${p.since.toFixed(2)} s` : ""}`, x, y);
    } else if (region === "keys") {
      setTip(keyName(clampKey(keyAt(g, y))), x, y);
    } else if (region === "ruler" && state.duration) {
      cursor = "col-resize";
      setTip(`${tOf(g, x).toFixed(2)} s · click: play from here · drag: A–B loop`, x, y);
    } else hideTip();
    canvas.style.cursor = cursor;
  }

  function showTip(n, x, y) { setTip(noteInfo(n), x, y); }

  function setTip(text, x, y) {
    const tip = $("tip");
    state.hover = text;
    tip.textContent = text;
    tip.hidden = false;
    const box = $("roll-box");
    const left = Math.min(x + 14, box.clientWidth - tip.offsetWidth - 4);
    tip.style.left = `${Math.max(0, left)}px`;
    tip.style.top = `${Math.max(0, y + (y > box.clientHeight - 40 ? -30 : 16))}px`;
  }

  function hideTip() { state.hover = ""; $("tip").hidden = true; }

  // ------------------------------------------------------------------ editing commands

  const selected = () => state.notes.filter((n) => state.selection.has(n.id));

  function drawVelocity() {
    const chosen = selected();
    if (chosen.length) return chosen[0].velocity;
    if (!state.notes.length) return 80;
    const velocities = state.notes.map((n) => n.velocity).sort((a, b) => a - b);
    return velocities[velocities.length >> 1];
  }

  function deleteSelected() {
    if (!state.selection.size) return;
    edit(() => { state.notes = state.notes.filter((n) => !state.selection.has(n.id)); });
    state.selection.clear();
    hideTip();
    updateInspector();
  }

  function selectAll() {
    state.selection = new Set(state.notes.map((n) => n.id));
    updateInspector();
    requestDraw();
  }

  function nudge(seconds, keys) {
    const chosen = selected();
    if (!chosen.length) return;
    const lowest = Math.min(...chosen.map((n) => n.onset));
    const lowKey = Math.min(...chosen.map((n) => n.key)), highKey = Math.max(...chosen.map((n) => n.key));
    const shift = Math.max(seconds, -lowest), k = Math.max(MIN_KEY - lowKey, Math.min(MAX_KEY - highKey, keys));
    if (!shift && !k) return;
    edit(() => {
      for (const n of selected()) { n.onset = round4(n.onset + shift); n.offset = round4(n.offset + shift); n.key += k; }
    });
  }

  function setVelocity(value, step) {  // step: one history entry per gesture, not per input event
    const v = Math.max(1, Math.min(127, Math.round(value)));
    if (!state.selection.size || !Number.isFinite(v)) return;
    if (!velocityEdit) velocityEdit = snapshot();
    for (const n of selected()) n.velocity = v;
    if (step) { pushUndo(velocityEdit); velocityEdit = null; notesChanged(); } else requestDraw();
    $("velocity").value = v;
    $("velocity-value").value = v;
  }
  let velocityEdit = null;

  function updateInspector() {
    const chosen = selected();
    $("inspector").hidden = !chosen.length;
    if (!chosen.length) return;
    $("selection-text").textContent = chosen.length === 1 ? keyName(chosen[0].key) : `${chosen.length} notes`;
    const mean = Math.round(chosen.reduce((sum, n) => sum + n.velocity, 0) / chosen.length);
    if (document.activeElement !== $("velocity-value")) $("velocity-value").value = mean;
    $("velocity").value = mean;
  }

  function setTool(tool) {
    state.tool = tool;
    for (const button of document.querySelectorAll(".tool")) button.classList.toggle("active", button.dataset.tool === tool);
  }

  // ------------------------------------------------------------------ practise: loop, speed, hands, metronome

  function setLoopPoint(which) {
    const t = position();
    const loop = state.loop;
    if (which === "a") loop.a = t; else loop.b = t;
    if (loop.a !== null && loop.b !== null && loop.b < loop.a) [loop.a, loop.b] = [loop.b, loop.a];
    if (loop.a !== null && loop.b !== null && loop.b - loop.a > 0.05) loop.on = true;
    updateToggles();
    requestDraw();
  }

  function toggleLoop() {
    const loop = state.loop;
    if (loop.a === null || loop.b === null || loop.b - loop.a < 0.05) {  // no loop yet: the visible passage or the selection
      const chosen = selected();
      if (chosen.length) {
        loop.a = Math.min(...chosen.map((n) => n.onset));
        loop.b = Math.max(...chosen.map((n) => n.offset));
      } else {
        const span = visibleSeconds();
        loop.a = state.view.start;
        loop.b = Math.min(state.duration, state.view.start + span);
      }
      loop.on = true;
    } else loop.on = !loop.on;
    updateToggles();
    requestDraw();
  }

  function setSpeed(speed) {
    const value = Math.max(0.5, Math.min(1, Number(speed)));
    if (!Number.isFinite(value)) return;
    state.speed = value;
    $("speed").value = String(SPEEDS.reduce((a, b) => (Math.abs(b - value) < Math.abs(a - value) ? b : a)));
    applySpeed();
    if (playback) seek(position());  // the transcription re-timed from here
  }

  function applySpeed() {
    audioEl.preservesPitch = true;  // the recording slowed, at its own pitch
    audioEl.mozPreservesPitch = true;
    audioEl.webkitPreservesPitch = true;
    audioEl.defaultPlaybackRate = state.speed;
    audioEl.playbackRate = state.speed;
  }

  function stepSpeed(direction) {
    const index = SPEEDS.findIndex((s) => Math.abs(s - Number($("speed").value)) < 1e-6);
    setSpeed(SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, index + direction))]);
  }

  function updateToggles() {
    const loop = state.loop;
    $("loop").classList.toggle("active", loop.on);
    $("loop-text").textContent = loop.a !== null && loop.b !== null ? `${clock(loop.a)}–${clock(loop.b)}` : "";
    $("hands").classList.toggle("active", state.hands.colour);
    $("mute-left").classList.toggle("active", state.hands.mute.L);
    $("mute-right").classList.toggle("active", state.hands.mute.R);
    $("metronome").classList.toggle("active", state.metronome);
    $("snap").classList.toggle("active", state.snap);
    $("snap").title = state.beats.length > 1 ? "snap to the beat grid (quarters of a beat)"
      : "snap to the beat grid (off until the recording's beats are known)";
    $("split").hidden = state.hands.known;
  }

  function fillSplit() {
    const split = $("split");
    split.dataset.title = split.title;
    for (let key = 36; key <= 84; key++) {
      const option = document.createElement("option");
      option.value = String(key);
      option.textContent = `split ${keyName(key)}`;
      split.append(option);
    }
    split.value = String(state.hands.split);
  }

  // ------------------------------------------------------------------ sound: the recording and a sampled piano

  function ensureAudio() {
    if (audio) return audio;
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const original = ctx.createGain(), piano = ctx.createGain(), click = ctx.createGain();
    const compressor = ctx.createDynamicsCompressor();  // dense chords must not clip
    piano.connect(compressor).connect(ctx.destination);
    original.connect(ctx.destination);
    click.gain.value = 0.35;
    click.connect(ctx.destination);
    const source = ctx.createMediaElementSource(audioEl);
    source.connect(original);
    audio = { ctx, original, piano, click, source };
    applyMix();
    return audio;
  }

  function applyMix() {
    const m = Number($("mix").value) / 100;  // equal-power crossfade
    for (const button of document.querySelectorAll(".mix")) {
      button.classList.toggle("active", Number(button.dataset.mix) === Math.round(m * 100));
    }
    if (!audio) return;
    audio.original.gain.value = Math.cos(m * Math.PI / 2);
    audio.piano.gain.value = Math.sin(m * Math.PI / 2);
  }

  async function loadPiano() {
    const piano = state.piano;
    if (piano.state === "ready" || piano.state === "loading") return piano.promise;
    piano.state = "loading";
    piano.promise = (async () => {
      try {
        const response = await fetch("/api/piano");
        const manifest = await response.json();
        if (!response.ok) throw new Error(manifest.error);
        piano.engine = manifest.engine;
        piano.keys = manifest.keys;
        // decoding needs an AudioContext; an OfflineAudioContext decodes without a user gesture
        const decoder = new OfflineAudioContext(1, 1, manifest.rate);
        await Promise.all(manifest.keys.map(async (key) => {
          const data = await (await fetch(manifest.urls[key])).arrayBuffer();
          piano.buffers.set(key, await decoder.decodeAudioData(data));
        }));
        piano.state = "ready";
      } catch (error) {
        piano.state = "error";
        showError(`the piano sound could not be loaded (${error.message}); the recording still plays`);
      }
    })();
    return piano.promise;
  }

  function playNote(note, when, until) {
    const piano = state.piano;
    const hand = handOf(note);
    if (piano.state !== "ready" || state.hands.mute[hand]) return;
    state.played[hand]++;
    const keys = piano.keys;
    const index = Math.max(0, Math.min(keys.length - 1, Math.round((note.key - keys[0]) / (keys[1] - keys[0]))));
    const sampleKey = keys[index];
    const source = audio.ctx.createBufferSource();
    source.buffer = piano.buffers.get(sampleKey);
    source.playbackRate.value = Math.pow(2, (note.key - sampleKey) / 12);
    const gain = audio.ctx.createGain();
    const level = 0.04 + 0.56 * Math.pow(note.velocity / 127, 1.6);
    gain.gain.setValueAtTime(level, when);
    gain.gain.setTargetAtTime(0, Math.max(when + 0.03, until), 0.07);  // the damper
    source.connect(gain).connect(audio.piano);
    source.start(when);
    source.stop(Math.max(when + 0.03, until) + 0.6);
    playback.voices.add(source);
    source.onended = () => { if (playback) playback.voices.delete(source); };
  }

  function playClick(when, down) {
    const osc = audio.ctx.createOscillator(), gain = audio.ctx.createGain();
    osc.frequency.value = down ? 1760 : 1320;
    gain.gain.setValueAtTime(0.0001, when);
    gain.gain.exponentialRampToValueAtTime(down ? 1 : 0.6, when + 0.002);
    gain.gain.exponentialRampToValueAtTime(0.0001, when + 0.05);
    osc.connect(gain).connect(audio.click);
    osc.start(when);
    osc.stop(when + 0.06);
    playback.voices.add(osc);
    osc.onended = () => { if (playback) playback.voices.delete(osc); };
    state.clicks++;
  }

  function firstAfter(list, t, get) {
    let low = 0, high = list.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (get(list[mid]) < t) low = mid + 1; else high = mid;
    }
    return low;
  }
  const firstNoteAfter = (t) => firstAfter(state.notes, t, (n) => n.onset);

  // the playing position in the recording's seconds (the clock runs at the chosen speed)
  function position() {
    if (!playback) return state.position;
    return Math.max(playback.startPos, playback.startPos + (audio.ctx.currentTime - playback.ctxStart) * playback.speed);
  }

  const contextTime = (t) => playback.ctxStart + (t - playback.startPos) / playback.speed;

  function schedule() {
    if (!playback) return;
    const now = position(), horizon = now + 0.35 * playback.speed;
    const limit = state.loop.on && state.loop.b !== null ? state.loop.b : Infinity;
    const notes = state.notes;
    while (playback.next < notes.length && notes[playback.next].onset < Math.min(horizon, limit)) {
      const note = notes[playback.next++];
      if (note.onset < now - 0.05) continue;
      playNote(note, Math.max(contextTime(note.onset), audio.ctx.currentTime), contextTime(Math.min(note.offset, limit)));
    }
    if (state.metronome) {
      const beats = state.beats, downbeats = new Set(state.downbeats.map((t) => t.toFixed(3)));
      while (playback.nextBeat < beats.length && beats[playback.nextBeat] < Math.min(horizon, limit)) {
        const beat = beats[playback.nextBeat++];
        if (beat >= now - 0.02) playClick(Math.max(contextTime(beat), audio.ctx.currentTime), downbeats.has(beat.toFixed(3)));
      }
    }
  }

  let starting = false;
  async function play() {
    if (playback || starting || !state.duration) return;
    starting = true;
    const { ctx } = ensureAudio();
    try {
      await ctx.resume();
      if (state.piano.state !== "ready") {
        showProgress(0.5, "Preparing the piano sound (the first time it is rendered, a few seconds)…");
        await loadPiano();
        showProgress(null);
      }
    } finally {
      starting = false;
    }
    if (playback || !state.duration) return;
    const loop = state.loop;
    if (loop.on && loop.a !== null && (state.position < loop.a || state.position >= loop.b - 0.02)) state.position = loop.a;
    if (state.position >= state.duration - 0.05) state.position = 0;
    const startPos = state.position;
    playback = {
      startPos, ctxStart: ctx.currentTime + 0.08, speed: state.speed, next: firstNoteAfter(startPos),
      nextBeat: firstAfter(state.beats, startPos, (t) => t), voices: new Set(), timer: 0,
    };
    state.playing = true;
    $("play").textContent = "❚❚ Pause";
    applySpeed();
    audioEl.currentTime = startPos;
    audioEl.play().catch(() => {});  // a recording the browser cannot play: the transcription still does
    playback.timer = setInterval(schedule, 40);
    schedule();
    requestAnimationFrame(tick);
  }

  function stop() {
    if (!playback) return;
    state.position = Math.min(position(), state.duration);
    clearInterval(playback.timer);
    for (const voice of playback.voices) { try { voice.stop(); } catch (error) { /* already stopped */ } }
    playback = null;
    audioEl.pause();
    state.playing = false;
    $("play").textContent = "▶ Play";
    requestDraw();
  }

  function seek(t) {
    const wasPlaying = !!playback;
    stop();
    state.position = t;
    requestDraw();
    if (wasPlaying) play();
  }

  audioEl.addEventListener("playing", () => {  // the recording's own start latency: follow it
    if (playback && !audioEl.paused) {
      playback.ctxStart = audio.ctx.currentTime - (audioEl.currentTime - playback.startPos) / playback.speed;
    }
  });
  audioEl.addEventListener("error", () => {  // a format this browser cannot play: ask for a WAV copy
    if (state.session && !audioEl.dataset.fallback && audioEl.src) {
      audioEl.dataset.fallback = "1";
      audioEl.src = `/api/sessions/${state.session}/audio?format=wav`;
    }
  });

  function tick() {
    if (!playback) return;
    const now = position();
    if (!audioEl.paused && Math.abs(audioEl.currentTime - now) > 0.12 * playback.speed) {  // drifted: the recording leads
      playback.ctxStart = audio.ctx.currentTime - (audioEl.currentTime - playback.startPos) / playback.speed;
    }
    const loop = state.loop;
    if (loop.on && loop.a !== null && loop.b !== null && now >= loop.b) {  // round again
      state.loops++;
      seek(loop.a);
      return;
    }
    state.position = Math.min(now, state.duration);
    const span = visibleSeconds();  // keep the playhead in view
    if (state.position > state.view.start + span * 0.92 || state.position < state.view.start) {
      state.view.start = Math.max(0, state.position - span * 0.1);
      clampView();
      updateScroll();
    }
    draw();
    if (now >= state.duration) { stop(); state.position = state.duration; draw(); return; }
    requestAnimationFrame(tick);
  }

  // ------------------------------------------------------------------ the score (issue 26), when the server has one

  let scoreMap = null;   // [{time, element}] sorted by time: what to light under the playhead
  let scoreTimer = null, scoreRun = 0;
  const SCORE_DELAY = 600;  // ms after the notes change (the slider) before the score is engraved again

  // The score, engraved by the local server (verovio). It is of the server's notes (as decoded);
  // the page's edits go into it only when asked (the button), as they go into a download.
  function loadScore(score) {
    state.score = score;
    state.scoreVersion = null;
    $("score-toggle").hidden = !score;
    $("score-toggle").classList.toggle("active", !!score && state.showScore);
    $("score-panel").hidden = !score || !state.showScore;
    if (!score) { scoreMap = null; $("score").innerHTML = ""; state.scoreState = "none"; return; }
    engraveScore(false);
  }

  // after the notes change: the decoded notes are engraved again; edits offer the button
  function scoreLater() {
    if (!state.score || !state.showScore) return;
    scoreBar();
    if (state.edited || state.scoreVersion === state.version) return;
    clearTimeout(scoreTimer);
    state.scoreState = "waiting";
    scoreTimer = setTimeout(() => engraveScore(false), SCORE_DELAY);
  }

  function scoreBar() {
    const stale = state.edited && state.scoreVersion !== state.version;
    $("score-bar").hidden = !stale;
    state.scoreStale = stale;
  }

  async function engraveScore(withEdits) {
    if (!state.score || !state.session || !state.showScore) return;
    const run = ++scoreRun, id = state.session, version = withEdits ? state.version : state.baseVersion;
    state.scoreState = "engraving";
    $("score-panel").classList.add("busy");
    if (!$("score").firstElementChild) $("score").textContent = "Engraving the score…";
    try {
      const response = await fetch(state.score.url, withEdits ? {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(pageNotes()),
      } : {});
      const data = await response.json();
      if (run !== scoreRun || id !== state.session) return;
      if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
      $("score").innerHTML = data.svg;  // our own server's SVG (verovio), nothing from elsewhere
      $("score-note").textContent = data.warning || "";
      $("score-note").hidden = !data.warning;
      scoreMap = [];
      for (const [element, time] of Object.entries(data.times || {})) {
        const node = document.getElementById(element);
        if (node) scoreMap.push({ time, element: node });
      }
      scoreMap.sort((a, b) => a.time - b.time);
      lit = [];
      state.scoreNotes = scoreMap.length;
      state.scoreVersion = version;
      state.scoreState = "ready";
    } catch (error) {
      if (run !== scoreRun) return;
      state.scoreState = "error";
      $("score").textContent = `The score could not be engraved (${error.message}); the piano roll and the ` +
        "other downloads still work.";
    } finally {
      if (run === scoreRun) $("score-panel").classList.remove("busy");
      scoreBar();
    }
    requestDraw();
  }

  let lit = [];
  function scorePlayhead(t) {
    if (!scoreMap || !scoreMap.length) return;
    const index = firstAfter(scoreMap, t + 1e-3, (e) => e.time) - 1;
    if (index < 0) { for (const e of lit) e.classList.remove("playing"); lit = []; return; }
    const time = scoreMap[index].time;
    const now = scoreMap.filter((e) => Math.abs(e.time - time) < 1e-3).map((e) => e.element);
    if (now.length === lit.length && now.every((e, i) => e === lit[i])) return;
    for (const e of lit) e.classList.remove("playing");
    for (const e of now) e.classList.add("playing");
    lit = now;
    if (state.playing && now[0]) {
      const panel = $("score-panel"), box = now[0].getBoundingClientRect(), view = panel.getBoundingClientRect();
      if (box.top < view.top || box.bottom > view.bottom) panel.scrollTop += box.top - view.top - view.height / 3;
    }
    state.scoreTime = time;
  }

  // ------------------------------------------------------------------ keyboard shortcuts (and the help overlay)

  const typing = (target) => ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) && target.type !== "range"
    || target.isContentEditable;
  const ready = () => state.duration > 0 && !state.live;

  // [keys shown, what it does, test(event), action]
  const SHORTCUTS = [
    ["Space", "play / pause", (e) => e.code === "Space", () => $("play").click()],
    ["Home", "back to the start", (e) => e.key === "Home", () => seek(state.loop.on ? state.loop.a : 0)],
    ["[ / ]", "set the loop's A / B at the playhead", (e) => e.key === "[" || e.key === "]",
      (e) => setLoopPoint(e.key === "[" ? "a" : "b")],
    ["L", "A–B loop on / off (no loop yet: the selection or the visible passage)", (e) => e.key === "l", toggleLoop],
    [", / .", "slower / faster (50–100 %)", (e) => e.key === "," || e.key === ".", (e) => stepSpeed(e.key === "," ? -1 : 1)],
    ["H", "colour the hands", (e) => e.key === "h", () => $("hands").click()],
    ["M", "metronome click on the beats", (e) => e.key === "m", () => $("metronome").click()],
    ["V / D", "select tool / draw tool", (e) => e.key === "v" || e.key === "d", (e) => setTool(e.key === "v" ? "select" : "draw")],
    ["Delete", "delete the selected notes", (e) => e.key === "Delete" || e.key === "Backspace", deleteSelected],
    ["← → / ↑ ↓", "move the selected notes in time (a grid step; shift: ×10) / by a semitone (shift: an octave)",
      (e) => ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key) && state.selection.size > 0,
      (e) => {
        const sign = e.key === "ArrowLeft" || e.key === "ArrowDown" ? -1 : 1;
        const anchor = selected()[0];
        if (e.key === "ArrowLeft" || e.key === "ArrowRight") nudge(sign * gridStep(anchor.onset) * (e.shiftKey ? 10 : 1), 0);
        else nudge(0, sign * (e.shiftKey ? 12 : 1));
      }],
    ["Ctrl + Z", "undo", (e) => (e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z", undo],
    ["Ctrl + Shift + Z / Ctrl + Y", "redo",
      (e) => (e.ctrlKey || e.metaKey) && ((e.shiftKey && e.key.toLowerCase() === "z") || e.key === "y"), redo],
    ["Ctrl + A", "select every note", (e) => (e.ctrlKey || e.metaKey) && e.key === "a", selectAll],
    ["Esc", "clear the selection / close this help", (e) => e.key === "Escape",
      () => { if (!$("help").hidden) showHelp(false); else { state.selection.clear(); updateInspector(); requestDraw(); } }],
    ["+ / −", "zoom in / out in time", (e) => ["+", "=", "-"].includes(e.key), (e) => zoom(e.key === "-" ? 1 / 1.6 : 1.6)],
    ["0", "the whole recording", (e) => e.key === "0", fitView],
    ["F / K", "the piece's keys / all 88 keys", (e) => e.key === "f" || e.key === "k",
      (e) => (e.key === "f" ? fitKeys() : setKeys(MIN_KEY, MAX_KEY))],
    ["S", "the score beside the roll (when the server engraves one)", (e) => e.key === "s",
      () => { if (state.score) $("score-toggle").click(); }],
    ["?", "this help", (e) => e.key === "?", () => showHelp($("help").hidden)],
  ];

  function showHelp(open) {
    $("help").hidden = !open;
    state.help = open;
  }

  function fillHelp() {
    const table = $("help-table");
    for (const [keys, what] of SHORTCUTS) {
      const row = table.insertRow(), left = row.insertCell(), right = row.insertCell();
      for (const [i, key] of keys.split(/ (\/|\+|,) /).entries()) {
        if (i % 2) left.append(` ${key} `);
        else { const kbd = document.createElement("kbd"); kbd.textContent = key; left.append(kbd); }
      }
      right.textContent = what;
    }
  }

  document.addEventListener("keydown", (event) => {
    if (typing(event.target) || event.altKey) return;
    if (event.target.tagName === "INPUT" && event.target.type === "range" && event.key.startsWith("Arrow")) return;
    const plain = !event.ctrlKey && !event.metaKey;
    for (const [keys, , test, action] of SHORTCUTS) {
      if (!test(event) || (!plain && !keys.includes("Ctrl"))) continue;
      const editing = !["?", "Esc"].includes(event.key) && event.key !== "Escape";
      if (editing && !ready() && event.code !== "Space") return;
      if (event.code === "Space" && ($("play").disabled || event.target.tagName === "BUTTON")) return;
      event.preventDefault();
      action(event);
      return;
    }
  });

  // ------------------------------------------------------------------ the controls

  $("scroll").addEventListener("input", () => { state.view.start = Number($("scroll").value); requestDraw(); });
  $("zoom-in").addEventListener("click", () => zoom(1.6));
  $("zoom-out").addEventListener("click", () => zoom(1 / 1.6));
  $("zoom-fit").addEventListener("click", fitView);
  $("keys-fit").addEventListener("click", fitKeys);
  $("keys-all").addEventListener("click", () => setKeys(MIN_KEY, MAX_KEY));
  window.addEventListener("resize", () => { clampView(); updateScroll(); requestDraw(); });
  $("play").addEventListener("click", () => (playback ? stop() : play()));
  $("mix").addEventListener("input", applyMix);
  for (const button of document.querySelectorAll(".mix")) {
    button.addEventListener("click", () => { $("mix").value = button.dataset.mix; applyMix(); });
  }
  $("sensitivity").addEventListener("input", sensitivityInput);
  $("sensitivity").addEventListener("change", sensitivityChange);
  for (const link of document.querySelectorAll("#downloads a")) link.addEventListener("click", downloadClicked);
  for (const button of document.querySelectorAll(".tool")) button.addEventListener("click", () => setTool(button.dataset.tool));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("snap").addEventListener("click", () => { state.snap = !state.snap; updateToggles(); });
  $("delete").addEventListener("click", deleteSelected);
  $("velocity").addEventListener("input", () => setVelocity(Number($("velocity").value), false));
  $("velocity").addEventListener("change", () => setVelocity(Number($("velocity").value), true));
  $("velocity-value").addEventListener("change", () => setVelocity(Number($("velocity-value").value), true));
  $("loop").addEventListener("click", toggleLoop);
  $("speed").addEventListener("change", () => setSpeed($("speed").value));
  $("hands").addEventListener("click", () => { state.hands.colour = !state.hands.colour; updateToggles(); requestDraw(); });
  $("split").addEventListener("change", () => { state.hands.split = Number($("split").value); requestDraw(); });
  $("mute-left").addEventListener("click", () => { state.hands.mute.L = !state.hands.mute.L; updateToggles(); requestDraw(); });
  $("mute-right").addEventListener("click", () => { state.hands.mute.R = !state.hands.mute.R; updateToggles(); requestDraw(); });
  $("metronome").addEventListener("click", () => {
    if (state.beats.length < 2) return;
    state.metronome = !state.metronome;
    if (playback) playback.nextBeat = firstAfter(state.beats, position(), (t) => t);
    updateToggles();
  });
  $("score-update").addEventListener("click", () => engraveScore(true));
  $("score-toggle").addEventListener("click", () => {
    state.showScore = !state.showScore;
    loadScore(state.score);
    requestDraw();
  });
  $("help-open").addEventListener("click", () => showHelp(true));
  $("help-close").addEventListener("click", () => showHelp(false));
  $("help").addEventListener("click", (event) => { if (event.target === $("help")) showHelp(false); });
  canvas.tabIndex = 0;

  // ------------------------------------------------------------------ live: the microphone into pianomtl.Stream

  const WORKLET = `
    class Tap extends AudioWorkletProcessor {
      process(inputs) {
        const input = inputs[0];
        if (input && input[0]) this.port.postMessage(input[0].slice(0));
        return true;
      }
    }
    registerProcessor("pianomtl-tap", Tap);`;

  async function startLive() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return showError("live mode needs the microphone, which browsers allow only on 127.0.0.1, localhost or HTTPS");
    }
    stop();
    showError("");
    showNotice("");
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
      });
    } catch (error) {
      return showError(`the microphone is not available (${error.message || error.name})`);
    }
    const { ctx } = ensureAudio();
    await ctx.resume();
    closeSession();
    setNotes([], [], 0, false);
    resetHistory();
    state.fileKey = "";
    const live = { socket: null, notes: [], pedal: [], open: new Map(), seconds: 0, media, nodes: [], buffer: [], fill: 0 };
    state.live = live;
    state.name = "live take";
    $("name").textContent = "Live: play!";
    $("live").classList.add("recording");
    $("live").textContent = "■ Stop";
    $("drop-hint").hidden = true;
    state.view.start = 0;
    state.view.pxPerSec = layout().rollW / 20;  // 20 s across; the view follows
    setKeys(MIN_KEY, MAX_KEY);
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
    socket.binaryType = "arraybuffer";
    live.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ rate: ctx.sampleRate }));
    socket.onmessage = (message) => liveMessage(live, JSON.parse(message.data));
    socket.onerror = () => showError("live mode: the connection to the server failed");
    socket.onclose = () => { if (state.live === live) stopLive(false); };
    const source = ctx.createMediaStreamSource(media);
    const mute = ctx.createGain();
    mute.gain.value = 0;  // pulls the tap without sending the microphone to the speakers
    mute.connect(ctx.destination);
    const send = (block) => {
      if (socket.readyState !== WebSocket.OPEN || !live.ready) return;
      live.buffer.push(block);
      live.fill += block.length;
      if (live.fill >= 4096) {  // ≈ 0.1 s per message
        const joined = new Float32Array(live.fill);
        let at = 0;
        for (const part of live.buffer) { joined.set(part, at); at += part.length; }
        live.buffer = []; live.fill = 0;
        socket.send(joined.buffer);
      }
    };
    let tap;
    try {
      const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
      await ctx.audioWorklet.addModule(url);
      tap = new AudioWorkletNode(ctx, "pianomtl-tap");
      tap.port.onmessage = (event) => send(event.data);
    } catch (error) {  // no AudioWorklet: the older ScriptProcessor
      tap = ctx.createScriptProcessor(4096, 1, 1);
      tap.onaudioprocess = (event) => send(new Float32Array(event.inputBuffer.getChannelData(0)));
    }
    source.connect(tap).connect(mute);
    live.nodes = [source, tap, mute];
    requestAnimationFrame(liveTick);
  }

  function liveMessage(live, message) {
    if (message.type === "ready") { live.ready = true; return; }
    if (message.type === "error") { showError(message.error); return; }
    if (message.type === "done") {
      if (state.live === live) stopLive(false);
      if (message.id) {
        showProgress(0.1, "Transcribing the take offline (the exact result, with the slider)…");
        follow(message.id, "live take.wav");
      }
      return;
    }
    if (message.type !== "events") return;
    live.seconds = Math.max(live.seconds, message.seconds);
    for (const event of message.events) {
      if (event.type === "note_on") {
        const note = { key: event.key, onset: event.time, offset: null, velocity: event.velocity };
        live.notes.push(note);
        live.open.set(event.key, note);
      } else if (event.type === "note_off") {
        const note = live.open.get(event.key);
        if (note) { note.offset = Math.max(event.time, note.onset + 0.02); live.open.delete(event.key); }
      } else if (event.type === "pedal_on" || event.type === "pedal_off") {
        live.pedal.push({ time: event.time, value: event.type === "pedal_on" ? 127 : 0 });
      }
    }
    $("count").textContent = `${live.notes.length} notes`;
  }

  function liveTick() {
    const live = state.live;
    if (!live) return;
    const span = visibleSeconds();
    if (live.seconds > state.view.start + span * 0.85) state.view.start = live.seconds - span * 0.85;
    draw();
    requestAnimationFrame(liveTick);
  }

  function stopLive(sendStop = true) {
    const live = state.live;
    if (!live) return;
    for (const node of live.nodes) node.disconnect();
    for (const track of live.media.getTracks()) track.stop();
    if (sendStop && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify({ type: "stop" }));
      live.stopping = true;
      $("live").textContent = "● Listen";
      $("live").classList.remove("recording");
      return;  // the server answers with the last events and the take's session, then liveMessage ends it
    }
    if (!sendStop && !live.stopping && live.socket.readyState === WebSocket.OPEN) live.socket.close();
    state.live = null;
    $("live").textContent = "● Listen";
    $("live").classList.remove("recording");
    state.duration = Math.max(state.duration, live.seconds);
    state.notes = live.notes.filter((n) => n.offset !== null).map(asNote);
    state.pedal = live.pedal;
    requestDraw();
  }

  $("live").addEventListener("click", () => (state.live ? stopLive(true) : startLive()));

  // ------------------------------------------------------------------ drag and drop, start-up

  $("file").addEventListener("change", () => { openFile($("file").files[0]); $("file").value = ""; });
  let dragDepth = 0;
  window.addEventListener("dragenter", (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    event.preventDefault();
    dragDepth++;
    $("drop-overlay").hidden = false;
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop-overlay").hidden = true; } });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    $("drop-overlay").hidden = true;
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) openFile(file);
  });
  window.addEventListener("pagehide", closeSession);

  // for tests and the console: the page's own functions (the UI calls the same ones)
  state.api = {
    openFile, undo, redo, noteBox, fitKeys, setKeys, setSpeed, setLoopPoint, toggleLoop, seek, keyName,
    layout, xOf: (t) => xOf(layout(), t), yOf: (key) => yOf(layout(), key), draw,
  };
  state.openFile = openFile;
  fillSplit();
  fillHelp();
  updateToggles();
  applyMix();
  applySpeed();
  loadConfig().then(resume);
  updateScroll();
  draw();
})();
