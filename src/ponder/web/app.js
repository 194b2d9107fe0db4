// Ponder's web app: one page over the OpenAI-compatible API (/v1) and the app's
// conversation store (/app/api/conversations). No build step, no framework.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const state = {
  conv: null,          // {id, title, messages}
  controller: null,    // AbortController of the running generation
  attachments: [],     // {kind, name, mime, url}
  settings: JSON.parse(localStorage.getItem("ponder.settings") || "{}"),
  mode: localStorage.getItem("ponder.mode") || "instant",
};

// --- API ------------------------------------------------------------------------

class ApiError extends Error {}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { "content-type": "application/json" }, ...options });
  } catch (e) {
    lostConnection();
    throw new ApiError("The server cannot be reached.");
  }
  if (!response.ok) throw new ApiError(await errorOf(response));
  return response.json();
}

// --- banner and connection ---------------------------------------------------------

function showError(message) {
  $("#banner-text").textContent = message;
  $("#banner").hidden = false;
}

function hideError() { $("#banner").hidden = true; }

let reconnecting = false;
async function lostConnection() {
  if (reconnecting) return;
  reconnecting = true;
  showError("Connection to the server lost. Reconnecting…");
  while (true) {
    await new Promise((r) => setTimeout(r, 1500));
    try {
      const r = await fetch("/health", { cache: "no-store" });
      if (r.ok) break;
    } catch (_) { /* still down */ }
  }
  reconnecting = false;
  hideError();
  await loadModels();
  await refreshList();
}

// --- Markdown, code and math -------------------------------------------------------

const MATH = /\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])/g;

function renderMarkdown(target, text) {
  const maths = [];
  const source = text.replace(MATH, (_, a, b, c, d) => {
    const display = a !== undefined || b !== undefined;
    maths.push({ tex: a ?? b ?? c ?? d, display });
    return `@@MATH${maths.length - 1}@@`;
  });
  let html = DOMPurify.sanitize(marked.parse(source, { gfm: true, breaks: false }));
  html = html.replace(/@@MATH(\d+)@@/g, (_, i) => {
    const m = maths[Number(i)];
    try {
      return katex.renderToString(m.tex, { displayMode: m.display, throwOnError: false, output: "htmlAndMathml" });
    } catch (_) {
      return m.tex.replace(/[&<>]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[ch]);
    }
  });
  target.innerHTML = html;
  target.querySelectorAll("pre code").forEach((code) => hljs.highlightElement(code));
}

// --- messages on screen ------------------------------------------------------------

function renderAll() {
  const box = $("#messages");
  box.replaceChildren();
  const messages = state.conv ? state.conv.messages : [];
  if (!messages.length) box.append($("#empty-template").content.cloneNode(true));
  messages.forEach((m, i) => box.append(m.role === "user" ? userView(m, i) : assistantView(m, i)));
  box.scrollTop = box.scrollHeight;
}

function chipsOf(attachments) {
  const chips = el("div", "chips");
  for (const a of attachments || []) {
    const chip = el("span", "chip");
    chip.dataset.kind = a.kind;
    if (a.kind === "image") {
      const img = el("img");
      img.src = a.url;
      img.alt = a.name;
      chip.append(img);
    } else {
      chip.append(el("span", "kind", a.kind === "audio" ? "♪" : "▤"));
    }
    chip.append(el("span", null, a.name));
    chips.append(chip);
  }
  return chips;
}

function userView(m, index) {
  const view = el("div", "msg user");
  if (m.attachments && m.attachments.length) view.append(chipsOf(m.attachments));
  if (m.content) view.append(el("div", "bubble", m.content));
  const actions = el("div", "actions");
  const edit = el("button", "icon edit", "✎ edit");
  edit.title = "Edit and resend";
  edit.onclick = () => editMessage(index);
  actions.append(edit);
  view.append(actions);
  return view;
}

function assistantView(m, index) {
  const view = el("div", "msg assistant");
  view.dataset.index = index;
  if (m.plan || (m.agents && m.agents.length)) view.append(agentsView(m));
  if (m.reasoning) {
    const details = el("details", "thinking");
    details.append(el("summary", null, m.done ? `Thought for ${m.stats ? m.stats.reasoning_tokens : "?"} tokens` : "Thinking…"));
    details.append(el("div", "reasoning", m.reasoning));
    if (!m.done) details.open = true;
    view.append(details);
  }
  for (const t of m.tools || []) view.append(el("div", "tool", `⚒ ${t.name}(${t.arguments}) → ${String(t.output).slice(0, 200)}`));
  const answer = el("div", "answer");
  renderMarkdown(answer, m.content || "");
  view.append(answer);
  if (m.error) view.append(el("div", "error-text", m.error));
  if (m.done) {
    if (m.stats) view.append(el("div", "stats", statsLine(m)));
    const actions = el("div", "actions");
    const speak = el("button", "icon speak", "▶ read aloud");
    speak.onclick = () => speakAloud(m.content, speak);
    const again = el("button", "icon regenerate", "↻ regenerate");
    again.onclick = () => regenerate(index);
    actions.append(speak, again);
    view.append(actions);
  }
  return view;
}

function agentsView(m) {
  const box = el("div", "agents");
  if (m.plan) {
    const why = m.plan.reason ? ` (${m.plan.reason})` : "";
    box.append(el("div", "plan", `Plan: ${m.plan.strategy}${why}, ${m.plan.agents.length} agents`));
  }
  (m.agents || []).forEach((a, i) => {
    if (!a) return;
    const card = el("div", "agent");
    card.dataset.status = a.status;
    card.dataset.agent = i;
    const head = el("div", "head");
    head.append(el("b", null, `Agent ${i + 1}`), el("span", null, a.title || ""), el("span", "status", a.status));
    card.append(head);
    if (a.reasoning) card.append(el("div", "reasoning", a.reasoning));
    if (a.result) {
      const result = el("div", "result answer");
      renderMarkdown(result, `→ ${a.result}`);
      card.append(result);
    }
    if (a.error) card.append(el("div", "error-text", a.error));
    box.append(card);
  });
  if (m.synthesis) box.append(el("div", "synthesis", m.synthesis));
  return box;
}

function statsLine(m) {
  const s = m.stats;
  const parts = [m.mode, `${s.reasoning_tokens} reasoning tokens`, `${s.answer_tokens} answer tokens`];
  if (s.ttft_ms !== null) parts.push(`first token ${(s.ttft_ms / 1000).toFixed(2)} s`);
  if (s.tokens_per_s) parts.push(`${s.tokens_per_s.toFixed(1)} tokens/s`);
  if (m.stopped) parts.push("stopped");
  return parts.join(" · ");
}

let pending = 0;
function redrawLast() {  // at most once a frame while tokens stream in
  if (pending) return;
  pending = requestAnimationFrame(() => {
    pending = 0;
    const messages = state.conv.messages;
    const last = $("#messages").lastElementChild;
    const index = messages.length - 1;
    const view = assistantView(messages[index], index);
    const box = $("#messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    if (last && last.classList.contains("assistant")) last.replaceWith(view); else box.append(view);
    if (atBottom) box.scrollTop = box.scrollHeight;
  });
}

// --- sending -------------------------------------------------------------------------

function wireMessages(messages) {
  return messages.filter((m) => !m.error || m.content).map((m) => {
    if (m.role !== "user") return { role: "assistant", content: m.content || "" };
    if (!m.attachments || !m.attachments.length) return { role: "user", content: m.content };
    const parts = [];
    for (const a of m.attachments) {
      if (a.kind === "image") parts.push({ type: "image_url", image_url: { url: a.url } });
      else if (a.kind === "audio") parts.push({ type: "input_audio", input_audio: { data: a.url.split(",", 2)[1], format: a.format } });
      else parts.push({ type: "file", file: { filename: a.name, file_data: a.url } });
    }
    if (m.content) parts.push({ type: "text", text: m.content });
    return { role: "user", content: parts };
  });
}

function requestBody(history) {
  const s = state.settings;
  const body = {
    model: $("#model").value, messages: wireMessages(history), stream: true,
    stream_options: { include_usage: true }, mode: state.mode,
  };
  if (state.mode !== "instant") body.reasoning_effort = $("#effort").value;
  if (s.temperature !== undefined && s.temperature !== "") body.temperature = Number(s.temperature);
  if (s.budget) body.thinking_budget = Number(s.budget);
  if (s.maxTokens) body.max_tokens = Number(s.maxTokens);
  if (state.mode === "contemplating" && (s.agents || s.budget)) {
    body.contemplation = {};
    if (s.agents) body.contemplation.agents = Number(s.agents);
    if (s.budget) body.contemplation.agent_budget = Number(s.budget);  // each agent thinks within the budget too
  }
  return body;
}

async function send(text, attachments) {
  if (state.controller) return;
  hideError();
  if (!state.conv) {
    const title = (text || (attachments[0] && attachments[0].name) || "New chat").slice(0, 60);
    state.conv = await api("/app/api/conversations", { method: "POST", body: JSON.stringify({ title }) });
    history.replaceState(null, "", `#${state.conv.id}`);  // a reload comes back to it
    await refreshList();
  }
  state.conv.messages.push({ role: "user", content: text, attachments });
  await generate();
}

async function generate() {
  const history = state.conv.messages.slice();
  const m = { role: "assistant", content: "", reasoning: "", mode: state.mode, agents: [], tools: [], done: false };
  state.conv.messages.push(m);
  renderAll();
  setBusy(true);
  const controller = new AbortController();
  state.controller = controller;
  const started = performance.now();
  let first = null;
  let usage = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify(requestBody(history)), signal: controller.signal,
    });
    if (!response.ok) throw new ApiError(await errorOf(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.error) throw new ApiError(chunk.error.message);
          if (chunk.usage) usage = chunk.usage;
          if (chunk.ponder) onProgress(m, chunk.ponder);
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (!delta) continue;
          const reasoning = delta.reasoning_content;
          if ((delta.content || reasoning) && first === null) first = performance.now();
          if (delta.content) m.content += delta.content;
          if (reasoning && state.mode !== "contemplating") m.reasoning += reasoning;
        }
      }
      redrawLast();
    }
  } catch (e) {
    if (e.name === "AbortError") m.stopped = true;
    else if (e instanceof ApiError) m.error = e.message;
    else { m.error = "The connection broke before the answer finished."; lostConnection(); }
  }
  const ended = performance.now();
  m.done = true;
  const answerTokens = usage ? usage.completion_tokens - (usage.completion_tokens_details?.reasoning_tokens || 0) : 0;
  m.stats = {
    reasoning_tokens: usage ? usage.completion_tokens_details?.reasoning_tokens || 0 : 0,
    answer_tokens: answerTokens,
    ttft_ms: first === null ? null : first - started,
    tokens_per_s: usage && first !== null && ended > first ? usage.completion_tokens / ((ended - first) / 1000) : null,
  };
  state.controller = null;
  setBusy(false);
  renderAll();
  await save();
}

function onProgress(m, p) {
  if (p.type === "plan") m.plan = { strategy: p.strategy, reason: p.reason, agents: p.agents };
  else if (p.type === "agent.start") m.agents[p.agent] = { title: p.title, status: "working", reasoning: "", result: "" };
  else if (p.type === "agent.delta" && m.agents[p.agent]) {
    if (p.reasoning) m.agents[p.agent].reasoning += p.reasoning;
  } else if (p.type === "agent.done" && m.agents[p.agent]) {
    Object.assign(m.agents[p.agent], { status: p.ok ? "done" : "failed", result: p.answer, error: p.error });
  } else if (p.type === "synthesis.start") {
    const tally = Object.entries(p.tally || {}).map(([answer, weight]) => `${answer}: ${Number(weight).toFixed(2)}`);
    m.synthesis = p.method === "vote" ? `Synthesis: a vote (${tally.join(", ")})` : "Synthesis: writing the answer…";
  } else if (p.type === "tool.call") {
    m.tools.push({ name: p.name, arguments: p.arguments, output: p.output });
  }
}

function setBusy(busy) {
  $("#send").hidden = busy;
  $("#stop").hidden = !busy;
}

function stop() { if (state.controller) state.controller.abort(); }

async function save() {
  if (!state.conv) return;
  try {
    await api(`/app/api/conversations/${state.conv.id}`, {
      method: "PUT", body: JSON.stringify({ title: state.conv.title, messages: state.conv.messages }),
    });
    await refreshList();
  } catch (e) { showError(`Could not save the conversation: ${e.message}`); }
}

async function regenerate(index) {
  if (state.controller) return;
  state.conv.messages.splice(index);
  await generate();
}

function editMessage(index) {
  if (state.controller) return;
  const m = state.conv.messages[index];
  state.conv.messages.splice(index);
  $("#input").value = m.content || "";
  state.attachments = m.attachments || [];
  renderAttachments();
  renderAll();
  $("#input").focus();
}

// --- attachments and voice --------------------------------------------------------------

const AUDIO_FORMATS = { "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3",
  "audio/mp3": "mp3", "audio/flac": "flac", "audio/ogg": "ogg", "audio/webm": "webm", "audio/mp4": "m4a",
  "audio/x-m4a": "m4a" };

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function addFiles(files) {
  for (const file of files) {
    const url = await readAsDataUrl(file);
    const mime = file.type || "";
    const kind = mime.startsWith("image/") ? "image" : mime.startsWith("audio/") ? "audio" : "file";
    const ext = file.name.split(".").pop().toLowerCase();
    const format = AUDIO_FORMATS[mime.split(";")[0]] || ext;
    state.attachments.push({ kind, name: file.name, mime, url, format });
  }
  renderAttachments();
}

function renderAttachments() {
  const box = $("#attachments");
  box.replaceChildren();
  state.attachments.forEach((a, i) => {
    const chip = chipsOf([a]).firstChild;
    const remove = el("button", "icon", "✕");
    remove.title = "Remove";
    remove.type = "button";
    remove.onclick = () => { state.attachments.splice(i, 1); renderAttachments(); };
    chip.append(remove);
    box.append(chip);
  });
}

let recorder = null;
async function toggleMic() {
  if (recorder) { recorder.stop(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) { showError(`The microphone is not available: ${e.message}`); return; }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    $("#mic").classList.remove("recording");
    const blob = new Blob(chunks, { type: chunks[0] ? chunks[0].type : "audio/webm" });
    const form = new FormData();
    form.append("file", blob, "speech.webm");
    form.append("model", "whisper-1");
    try {
      const response = await fetch("/v1/audio/transcriptions", { method: "POST", body: form });
      if (!response.ok) throw new ApiError(await errorOf(response));
      const { text } = await response.json();
      if (text.trim()) submit(text.trim());
    } catch (e) { showError(`Could not transcribe the recording: ${e.message}`); }
  };
  recorder.start();
  $("#mic").classList.add("recording");
}

async function speakAloud(text, button) {
  button.disabled = true;
  try {
    const response = await fetch("/v1/audio/speech", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tts-1", voice: "alloy", input: text.slice(0, 4096), response_format: "mp3" }),
    });
    if (!response.ok) throw new ApiError(await errorOf(response));
    const audio = new Audio(URL.createObjectURL(await response.blob()));
    audio.onended = () => { button.disabled = false; };
    await audio.play();
  } catch (e) { showError(`Could not read the answer aloud: ${e.message}`); button.disabled = false; }
}

// --- conversations -------------------------------------------------------------------------

async function refreshList() {
  const q = $("#search").value.trim();
  let list;
  try { list = await api(`/app/api/conversations?q=${encodeURIComponent(q)}`); } catch (_) { return; }
  const ul = $("#conversations");
  ul.replaceChildren();
  for (const c of list.data) {
    const li = el("li");
    li.dataset.id = c.id;
    if (state.conv && state.conv.id === c.id) li.classList.add("active");
    const title = el("span", "title", c.title);
    title.onclick = () => openConversation(c.id);
    const rename = el("button", "icon rename", "✎");
    rename.title = "Rename";
    rename.onclick = () => startRename(li, c);
    const remove = el("button", "icon delete", "✕");
    remove.title = "Delete";
    remove.onclick = () => removeConversation(c);
    li.append(title, rename, remove);
    ul.append(li);
  }
}

function startRename(li, c) {
  const input = el("input");
  input.value = c.title;
  li.querySelector(".title").replaceWith(input);
  input.focus();
  input.select();
  const done = async (keep) => {
    input.onblur = null;
    if (keep && input.value.trim()) {
      await api(`/app/api/conversations/${c.id}`, { method: "PUT", body: JSON.stringify({ title: input.value.trim() }) });
      if (state.conv && state.conv.id === c.id) state.conv.title = input.value.trim();
    }
    await refreshList();
  };
  input.onkeydown = (e) => { if (e.key === "Enter") done(true); if (e.key === "Escape") done(false); };
  input.onblur = () => done(true);
}

async function removeConversation(c) {
  if (!confirm(`Delete "${c.title}"?`)) return;
  await api(`/app/api/conversations/${c.id}`, { method: "DELETE" });
  if (state.conv && state.conv.id === c.id) newChat();
  await refreshList();
}

async function openConversation(id) {
  if (state.controller) stop();
  try {
    state.conv = await api(`/app/api/conversations/${id}`);
  } catch (e) { showError(e.message); return; }
  location.hash = id;
  $("#layout").classList.remove("sidebar-open");
  renderAll();
  await refreshList();
}

function newChat() {
  if (state.controller) stop();
  state.conv = null;
  history.replaceState(null, "", location.pathname);
  renderAll();
  refreshList();
  $("#input").focus();
}

// --- models, modes, settings, theme -----------------------------------------------------------

async function loadModels() {
  let models;
  try { models = await api("/v1/models"); } catch (e) { showError(`Could not list the models: ${e.message}`); return; }
  const select = $("#model");
  const chosen = select.value || localStorage.getItem("ponder.model");
  select.replaceChildren(...models.data.map((m) => { const o = el("option", null, m.id); o.value = m.id; return o; }));
  if (chosen && models.data.some((m) => m.id === chosen)) select.value = chosen;
}

function setMode(mode) {
  state.mode = mode;
  localStorage.setItem("ponder.mode", mode);
  document.querySelectorAll("#modes button").forEach((b) => b.setAttribute("aria-checked", String(b.dataset.mode === mode)));
  $("#effort").disabled = mode === "instant";
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("ponder.theme", theme);
  $("#hljs-dark").disabled = theme !== "dark";
  $("#hljs-light").disabled = theme === "dark";
}

function bindSettings() {
  const fields = { temperature: "#set-temperature", budget: "#set-budget", agents: "#set-agents", maxTokens: "#set-max-tokens" };
  for (const [key, sel] of Object.entries(fields)) {
    $(sel).value = state.settings[key] ?? "";
    $(sel).onchange = () => {
      state.settings[key] = $(sel).value;
      localStorage.setItem("ponder.settings", JSON.stringify(state.settings));
    };
  }
}

// --- wiring -------------------------------------------------------------------------------------

function submit(text) {
  const attachments = state.attachments;
  if (!text && !attachments.length) return;
  state.attachments = [];
  renderAttachments();
  $("#input").value = "";
  send(text, attachments).catch((e) => { if (!reconnecting) showError(e.message); });
}

function start() {
  const template = document.createElement("template");
  template.id = "empty-template";
  template.content.append($("#empty"));
  document.body.append(template);

  setTheme(localStorage.getItem("ponder.theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  setMode(state.mode);
  bindSettings();
  document.querySelectorAll("#modes button").forEach((b) => { b.onclick = () => setMode(b.dataset.mode); });
  $("#theme").onclick = () => setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  $("#settings-button").onclick = () => $("#settings").showModal();
  $("#model").onchange = () => localStorage.setItem("ponder.model", $("#model").value);
  $("#new-chat").onclick = newChat;
  $("#open-sidebar").onclick = () => $("#layout").classList.add("sidebar-open");
  $("#close-sidebar").onclick = () => $("#layout").classList.remove("sidebar-open");
  $("#banner-close").onclick = hideError;
  $("#attach").onclick = () => $("#file").click();
  $("#file").onchange = (e) => { addFiles([...e.target.files]).catch((err) => showError(err.message)); e.target.value = ""; };
  $("#mic").onclick = toggleMic;
  $("#stop").onclick = stop;
  let searchTimer = 0;
  $("#search").oninput = () => { clearTimeout(searchTimer); searchTimer = setTimeout(refreshList, 200); };
  $("#composer").onsubmit = (e) => { e.preventDefault(); submit($("#input").value.trim()); };
  $("#input").onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit($("#input").value.trim()); }
  };
  $("#input").oninput = () => { const t = $("#input"); t.style.height = "auto"; t.style.height = `${t.scrollHeight}px`; };
  document.addEventListener("keydown", (e) => {
    const mod = e.ctrlKey || e.metaKey;
    if (e.key === "Escape" && state.controller) { e.preventDefault(); stop(); }
    else if (mod && e.shiftKey && e.key.toLowerCase() === "o") { e.preventDefault(); newChat(); }
    else if (mod && e.key.toLowerCase() === "k") { e.preventDefault(); $("#search").focus(); }
  });
  window.addEventListener("online", () => lostConnection());

  renderAll();
  loadModels();
  refreshList();
  if (location.hash.length > 1) openConversation(location.hash.slice(1));
}

document.addEventListener("DOMContentLoaded", start);
