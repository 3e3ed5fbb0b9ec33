// pianomtl's page: open a recording, watch it being transcribed, see the piano roll,
// listen to the recording and the transcription (a sampled piano in WebAudio), change the
// onset threshold, download, or transcribe the microphone live. Plain JS, no libraries;
// everything comes from the local server (see pianomtl/web/server.py for the API).
"use strict";

(() => {
  const MIN_KEY = 21, MAX_KEY = 108, N_KEYS = 88;
  const BLACK = new Set([1, 3, 6, 8, 10]);
  const KEYBOARD_W = 58, RULER_H = 22, PEDAL_H = 30, GAP = 6;
  const $ = (id) => document.getElementById(id);

  // Everything the page knows; exposed as window.pianomtl for tests and curious users.
  const state = {
    config: null,
    session: null, name: "", notes: [], pedal: [], duration: 0, redecode: false,
    status: "idle", error: "",
    view: { start: 0, pxPerSec: 100 },
    position: 0, playing: false,
    drawnNotes: 0, draws: 0,
    live: null,               // {socket, notes, pedal, open: Map key → note, seconds}
    piano: { state: "none", engine: "", buffers: new Map(), keys: [] },
    threshold: 0.5,
  };
  window.pianomtl = state;

  const canvas = $("roll");
  const ctx2d = canvas.getContext("2d");
  const audioEl = $("original");
  let audio = null;           // {ctx, original, piano, source}
  let playback = null;        // {startPos, ctxStart, next, timer, voices}
  let pollTimer = null, decodeTimer = null, decodePending = null, decodeBusy = false;

  // ------------------------------------------------------------------ messages and progress

  function showError(text) {
    state.error = text || "";
    const box = $("error");
    box.textContent = state.error;
    box.title = state.error;
    box.hidden = !state.error;
  }

  function showProgress(fraction, text) {
    $("progress").hidden = fraction === null;
    if (fraction !== null) {
      $("progress-fill").style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
      $("progress-text").textContent = text;
    }
  }

  const STAGES = {
    uploading: "Uploading", queued: "Waiting for another transcription to finish", reading: "Reading the audio",
    network: "Running the network", decoding: "Decoding notes and pedal", recording: "Listening",
  };

  // ------------------------------------------------------------------ opening a recording

  async function loadConfig() {
    try {
      state.config = await (await fetch("/api/config")).json();
      $("formats").textContent =
        `${state.config.formats.join(" ")} … up to ${state.config.max_upload}; nothing leaves this computer.`;
      const accept = ["audio/*", ...state.config.formats].join(",");
      $("file").setAttribute("accept", accept);
      if (!state.config.live) $("live").hidden = true;
    } catch (error) {
      showError("cannot reach the pianomtl server; is `pianomtl serve` still running?");
    }
  }

  function closeSession() {
    if (state.session) navigator.sendBeacon(`/api/sessions/${state.session}/close`);
    state.session = null;
  }

  function openFile(file) {
    if (!file) return;
    stop();
    stopLive(false);
    showError("");
    const limit = state.config ? state.config.max_upload_bytes : Infinity;
    if (file.size > limit) {
      showError(`${file.name}: the file is larger than this server's upload limit of ${state.config.max_upload}`);
      return;
    }
    closeSession();
    setNotes([], [], 0, false);
    state.name = file.name;
    $("name").textContent = file.name;
    state.status = "uploading";
    showProgress(0, `${STAGES.uploading} ${file.name}…`);
    const form = new FormData();
    form.append("audio", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/sessions");
    request.responseType = "json";
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) showProgress(0.1 * event.loaded / event.total, `${STAGES.uploading} ${file.name}…`);
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
    const stage = STAGES[status.stage] || status.stage;
    showProgress(0.1 + 0.9 * status.progress, `${stage}… ${Math.round(status.progress * 100)}%`);
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
    setNotes(data.notes, data.pedal, data.duration, data.redecode);
    const threshold = data.decoder.onset_threshold;
    $("threshold").value = threshold;
    $("threshold-value").textContent = Number(threshold).toFixed(2);
    state.threshold = threshold;
    fitView();
    for (const kind of ["mid", "csv", "json"]) {
      const link = $(`dl-${kind}`);
      link.href = `/api/sessions/${id}/download/${kind}`;
      link.setAttribute("aria-disabled", "false");
    }
    $("play").disabled = false;
    state.status = "ready";
    loadPiano();  // in the background: ready by the time someone presses play
  }

  function setNotes(notes, pedal, duration, redecode) {
    state.notes = notes.slice().sort((a, b) => a.onset - b.onset || a.key - b.key);
    state.pedal = pedal;
    state.duration = duration;
    state.redecode = redecode;
    $("threshold").disabled = !redecode;
    $("count").textContent = duration ? `${state.notes.length} notes` : "";
    $("drop-hint").hidden = duration > 0 || state.live !== null;
    if (!duration) {
      for (const kind of ["mid", "csv", "json"]) $(`dl-${kind}`).setAttribute("aria-disabled", "true");
      $("play").disabled = true;
      state.position = 0;
    }
    if (playback) playback.next = firstNoteAfter(position());
    updateScroll();
    draw();
  }

  // ------------------------------------------------------------------ the onset threshold

  function thresholdChanged() {
    const value = Number($("threshold").value);
    $("threshold-value").textContent = value.toFixed(2);
    clearTimeout(decodeTimer);
    decodeTimer = setTimeout(() => redecode(value), 120);
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
        state.threshold = data.decoder.onset_threshold;
        setNotes(data.notes, data.pedal, data.duration, data.redecode);
      }
    } finally {
      decodeBusy = false;
      if (decodePending !== null) { const next = decodePending; decodePending = null; redecode(next); }
    }
  }

  // ------------------------------------------------------------------ geometry and drawing

  function layout() {
    const width = canvas.clientWidth, height = canvas.clientHeight;
    const rollTop = RULER_H, rollH = Math.max(88, height - RULER_H - PEDAL_H - GAP);
    return {
      width, height, rollLeft: KEYBOARD_W, rollW: Math.max(10, width - KEYBOARD_W), rollTop, rollH,
      keyH: rollH / N_KEYS, pedalTop: rollTop + rollH + GAP,
    };
  }

  const xOf = (g, t) => g.rollLeft + (t - state.view.start) * state.view.pxPerSec;
  const tOf = (g, x) => state.view.start + (x - g.rollLeft) / state.view.pxPerSec;
  const yOf = (g, key) => g.rollTop + (MAX_KEY - key) * g.keyH;

  function visibleSeconds() { return layout().rollW / state.view.pxPerSec; }

  function velocityColour(velocity, alpha) {
    const v = Math.max(1, Math.min(127, velocity)) / 127;   // soft: pale amber, loud: deep crimson
    const hue = (45 - 57 * v + 360) % 360, light = 70 - 34 * v;
    return `hsla(${hue.toFixed(0)}, 85%, ${light.toFixed(0)}%, ${alpha})`;
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
    const sounding = new Map();  // key → velocity under the playhead

    // lanes: black keys' rows shaded, a line under every C
    c.fillStyle = "#ffffff";
    c.fillRect(g.rollLeft, g.rollTop, g.rollW, g.rollH);
    for (let key = MIN_KEY; key <= MAX_KEY; key++) {
      const y = yOf(g, key);
      if (BLACK.has(key % 12)) { c.fillStyle = "#f1f2f5"; c.fillRect(g.rollLeft, y, g.rollW, g.keyH); }
      if (key % 12 === 0) { c.fillStyle = "#d5d9e0"; c.fillRect(g.rollLeft, y + g.keyH - 0.5, g.rollW, 1); }
    }

    // time grid and ruler
    const step = tickStep(state.view.pxPerSec);
    const first = Math.floor(state.view.start / step) * step, last = tOf(g, g.width);
    c.font = "11px system-ui, sans-serif";
    c.textBaseline = "middle";
    c.fillStyle = "#fafafa";
    c.fillRect(g.rollLeft, 0, g.rollW, RULER_H);
    for (let t = first; t <= last; t += step) {
      const x = Math.round(xOf(g, t)) + 0.5;
      if (x < g.rollLeft) continue;
      c.fillStyle = "#e6e8ec";
      c.fillRect(x, g.rollTop, 1, g.rollH);
      c.fillStyle = "#98a2b3";
      c.fillRect(x, RULER_H - 6, 1, 6);
      c.fillStyle = "#475467";
      c.fillText(step < 1 ? `${t.toFixed(step < 0.1 ? 2 : 1)} s` : clock(t).replace(/\.0$/, ""), x + 3, RULER_H / 2 - 1);
    }
    if (state.duration > 0) {  // past the end of the recording
      const end = xOf(g, state.duration);
      if (end < g.width) { c.fillStyle = "rgba(0,0,0,0.04)"; c.fillRect(end, g.rollTop, g.width - end, g.rollH); }
    }

    // notes
    const t0 = state.view.start, t1 = tOf(g, g.width);
    const liveNow = state.live ? state.live.seconds : 0;
    const notes = state.live ? state.live.notes : state.notes;
    let drawn = 0;
    c.save();
    c.beginPath();
    c.rect(g.rollLeft, g.rollTop, g.rollW, g.rollH);
    c.clip();
    for (const note of notes) {
      const offset = note.offset === null ? Math.max(liveNow, note.onset + 0.02) : note.offset;
      if (offset < t0 || note.onset > t1) continue;
      const x0 = xOf(g, note.onset), x1 = Math.max(xOf(g, offset), x0 + 2);
      const y = yOf(g, note.key);
      c.fillStyle = velocityColour(note.velocity, 0.45 + 0.55 * note.velocity / 127);
      c.fillRect(x0, y + 0.5, x1 - x0, Math.max(1, g.keyH - 1));
      c.strokeStyle = velocityColour(note.velocity, 1);
      c.lineWidth = 1;
      if (g.keyH >= 4) c.strokeRect(x0 + 0.5, y + 1, x1 - x0 - 1, g.keyH - 2);
      drawn++;
      if (note.onset <= state.position && state.position < offset) sounding.set(note.key, note.velocity);
    }
    c.restore();
    state.drawnNotes = drawn;
    state.draws++;
    canvas.dataset.notesDrawn = String(drawn);

    // keyboard: white keys full width, black keys shorter; C's named; sounding keys lit
    c.fillStyle = "#ffffff";
    c.fillRect(0, g.rollTop, KEYBOARD_W, g.rollH);
    for (let key = MIN_KEY; key <= MAX_KEY; key++) {
      const y = yOf(g, key);
      const lit = sounding.get(key);
      if (!BLACK.has(key % 12)) {
        c.fillStyle = lit ? velocityColour(lit, 0.8) : "#ffffff";
        c.fillRect(0, y, KEYBOARD_W, g.keyH);
        const below = key - 1;
        if (!BLACK.has(((below % 12) + 12) % 12) || key % 12 === 0 || key % 12 === 5) {
          c.fillStyle = "#c9ced6";
          c.fillRect(0, y + g.keyH - 0.5, KEYBOARD_W, 0.8);
        }
      }
    }
    for (let key = MIN_KEY; key <= MAX_KEY; key++) {
      if (!BLACK.has(key % 12)) continue;
      const y = yOf(g, key), lit = sounding.get(key);
      c.fillStyle = lit ? velocityColour(lit, 1) : "#1f242c";
      c.fillRect(0, y, KEYBOARD_W * 0.6, g.keyH);
    }
    c.fillStyle = "#667085";
    c.font = `${Math.min(10, Math.max(8, g.keyH * 1.5)).toFixed(0)}px system-ui, sans-serif`;
    for (let key = 24; key <= MAX_KEY; key += 12) {
      c.fillText(`C${key / 12 - 1}`, KEYBOARD_W - 22, yOf(g, key) + g.keyH / 2);
    }
    c.fillStyle = "#98a2b3";
    c.fillRect(KEYBOARD_W - 1, g.rollTop, 1, g.rollH);

    // velocity legend above the keyboard: soft → loud
    for (let i = 0; i < 40; i++) {
      c.fillStyle = velocityColour(1 + 126 * i / 39, 1);
      c.fillRect(6 + i, 3, 1, 6);
    }
    c.fillStyle = "#667085";
    c.font = "9px system-ui, sans-serif";
    c.fillText("velocity", 6, 15);

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
    c.strokeRect(g.rollLeft + 0.5, g.pedalTop + 0.5, g.rollW - 1, PEDAL_H - 1);

    // playhead
    const x = xOf(g, state.live ? liveNow : state.position);
    if (x >= g.rollLeft && x <= g.width) {
      c.fillStyle = "#d92d20";
      c.fillRect(Math.round(x) - 1, 0, 2, g.pedalTop + PEDAL_H);
    }
    $("time").textContent = `${clock(state.live ? liveNow : state.position)} / ${clock(state.live ? liveNow : state.duration)}`;
  }

  let drawQueued = false;
  function requestDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }

  // ------------------------------------------------------------------ zoom and scroll

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

  function updateScroll() {
    const scroll = $("scroll");
    const max = Math.max(0, state.duration - visibleSeconds() * 0.9);
    scroll.max = max.toFixed(2);
    scroll.value = state.view.start.toFixed(2);
    scroll.disabled = max <= 0;
  }

  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (event.ctrlKey || event.metaKey) {
      zoom(Math.exp(-event.deltaY * 0.002), event.offsetX);
    } else {
      const delta = Math.abs(event.deltaX) > Math.abs(event.deltaY) ? event.deltaX : event.deltaY;
      state.view.start += delta / state.view.pxPerSec;
      clampView();
      updateScroll();
      requestDraw();
    }
  }, { passive: false });

  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    drag = { x: event.offsetX, start: state.view.start, moved: false };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.offsetX - drag.x;
    if (Math.abs(dx) > 3) drag.moved = true;
    if (drag.moved) {
      state.view.start = drag.start - dx / state.view.pxPerSec;
      clampView();
      updateScroll();
      requestDraw();
    }
  });
  canvas.addEventListener("pointerup", (event) => {
    if (drag && !drag.moved && event.offsetX > KEYBOARD_W && state.duration > 0 && !state.live) {
      seek(Math.max(0, Math.min(state.duration, tOf(layout(), event.offsetX))));
    }
    drag = null;
  });
  $("scroll").addEventListener("input", () => { state.view.start = Number($("scroll").value); requestDraw(); });
  $("zoom-in").addEventListener("click", () => zoom(1.6));
  $("zoom-out").addEventListener("click", () => zoom(1 / 1.6));
  $("zoom-fit").addEventListener("click", fitView);
  window.addEventListener("resize", () => { clampView(); updateScroll(); requestDraw(); });

  // ------------------------------------------------------------------ sound: the recording and a sampled piano

  function ensureAudio() {
    if (audio) return audio;
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const original = ctx.createGain(), piano = ctx.createGain();
    const compressor = ctx.createDynamicsCompressor();  // dense chords must not clip
    piano.connect(compressor).connect(ctx.destination);
    original.connect(ctx.destination);
    const source = ctx.createMediaElementSource(audioEl);
    source.connect(original);
    audio = { ctx, original, piano, source };
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
    if (piano.state !== "ready") return;
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

  function firstNoteAfter(t) {
    let low = 0, high = state.notes.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (state.notes[mid].onset < t) low = mid + 1; else high = mid;
    }
    return low;
  }

  function position() {
    if (!playback) return state.position;
    return Math.max(playback.startPos, playback.startPos + audio.ctx.currentTime - playback.ctxStart);
  }

  function schedule() {
    if (!playback) return;
    const now = position(), horizon = now + 0.35;
    const notes = state.notes;
    while (playback.next < notes.length && notes[playback.next].onset < horizon) {
      const note = notes[playback.next++];
      if (note.onset < now - 0.05) continue;
      const when = playback.ctxStart + note.onset - playback.startPos;
      const until = playback.ctxStart + note.offset - playback.startPos;
      playNote(note, Math.max(when, audio.ctx.currentTime), until);
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
    if (state.position >= state.duration - 0.05) state.position = 0;
    const startPos = state.position;
    playback = { startPos, ctxStart: ctx.currentTime + 0.08, next: firstNoteAfter(startPos), voices: new Set(), timer: 0 };
    state.playing = true;
    $("play").textContent = "❚❚ Pause";
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
      playback.ctxStart = audio.ctx.currentTime - (audioEl.currentTime - playback.startPos);
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
    if (!audioEl.paused && Math.abs(audioEl.currentTime - now) > 0.12) {  // drifted: the recording leads
      playback.ctxStart = audio.ctx.currentTime - (audioEl.currentTime - playback.startPos);
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

  $("play").addEventListener("click", () => (playback ? stop() : play()));
  $("mix").addEventListener("input", applyMix);
  for (const button of document.querySelectorAll(".mix")) {
    button.addEventListener("click", () => { $("mix").value = button.dataset.mix; applyMix(); });
  }
  $("threshold").addEventListener("input", thresholdChanged);
  document.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (event.code === "Space" && tag !== "INPUT" && tag !== "BUTTON" && !$("play").disabled) {
      event.preventDefault();
      $("play").click();
    }
  });

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
    const live = { socket: null, notes: [], pedal: [], open: new Map(), seconds: 0, media, nodes: [], buffer: [], fill: 0 };
    state.live = live;
    state.name = "live take";
    $("name").textContent = "Live: play!";
    $("live").classList.add("recording");
    $("live").textContent = "■ Stop";
    $("drop-hint").hidden = true;
    state.view.start = 0;
    state.view.pxPerSec = layout().rollW / 20;  // 20 s across; the view follows
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
    state.notes = live.notes.filter((n) => n.offset !== null);
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

  state.openFile = openFile;  // for tests and the console
  applyMix();
  loadConfig();
  updateScroll();
  draw();
})();
