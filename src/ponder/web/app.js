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

function stored(key, fallback) {  // localStorage may be blocked, or hold anything
  try {
    const value = localStorage.getItem(key);
    return value === null ? fallback : JSON.parse(value);
  } catch (_) { return fallback; }
}

function keep(key, value) {
  try { localStorage.setItem(key, JSON.stringify(value)); } catch (_) { /* storage blocked: not kept */ }
}

const MODES = ["auto", "instant", "thinking", "contemplating"];
const EFFORTLESS = ["auto", "instant"];  // modes that take no reasoning effort
const savedSettings = stored("ponder.settings", {});
const state = {
  conv: null,          // {id, title, messages}
  controller: null,    // AbortController of the running generation
  running: null,       // the running generation (a promise), to wait for before switching chats
  attachments: [],     // {kind, name, mime, url}
  settings: savedSettings && typeof savedSettings === "object" ? savedSettings : {},
  mode: MODES.includes(stored("ponder.mode", "auto")) ? stored("ponder.mode", "auto") : "auto",
};

// --- API ------------------------------------------------------------------------

class ApiError extends Error {}

// The API key, where the server asks for one ([server] auth): kept in this browser,
// and sent with every API call.
function authorized(headers = {}) {
  const key = stored("ponder.key", "");
  return typeof key === "string" && key ? { ...headers, authorization: `Bearer ${key}` } : headers;
}

async function errorOf(response) {
  if (response.status === 401) askForKey();
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: authorized({ "content-type": "application/json" }), ...options });
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
//
// Math is a Markdown extension, so code spans and blocks never hold any. It renders
// as an empty <span data-math>, filled by KaTeX (trust off) after the model's HTML
// is sanitised; the TeX itself stays in a list in this script, never in the HTML.

let maths = [];
let nonce = "";  // per render: a data-math the model wrote itself names no formula
const MATH_RULES = [
  [/^\$\$([\s\S]+?)\$\$/, true], [/^\\\[([\s\S]+?)\\\]/, true], [/^\\\(([\s\S]+?)\\\)/, false],
  [/^\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])/, false],
];

function setUpMarkdown() {
  marked.use({
    gfm: true,
    extensions: [{
      name: "math", level: "inline",
      start(src) { const i = src.search(/\$|\\[([]/); return i < 0 ? undefined : i; },
      tokenizer(src) {
        for (const [rule, display] of MATH_RULES) {
          const m = rule.exec(src);
          if (m) return { type: "math", raw: m[0], tex: m[1], display };
        }
        return undefined;
      },
      renderer(token) {
        maths.push({ tex: token.tex, display: token.display });
        return `<span data-math="${nonce}-${maths.length - 1}"></span>`;
      },
    }],
  });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") { node.setAttribute("target", "_blank"); node.setAttribute("rel", "noopener noreferrer"); }
  });
}

const PURIFY = {
  FORBID_TAGS: ["style", "form", "input", "textarea", "button", "select", "option", "dialog", "iframe", "object", "embed"],
  FORBID_ATTR: ["style"],
  SANITIZE_NAMED_PROPS: true,  // an answer's id="input" becomes user-content-input: it cannot stand in for the page's
};

function renderMarkdown(target, text) {
  maths = [];
  nonce = Array.from(crypto.getRandomValues(new Uint32Array(2)), (x) => x.toString(36)).join("");
  target.innerHTML = DOMPurify.sanitize(marked.parse(text), PURIFY);
  const found = maths;
  const mine = nonce;
  target.querySelectorAll("span[data-math]").forEach((span) => {
    const [tag, index] = span.dataset.math.split("-");
    span.removeAttribute("data-math");
    const m = tag === mine ? found[Number(index)] : undefined;
    if (!m) return;  // a data-math the model wrote itself
    try {
      katex.render(m.tex, span, { displayMode: m.display, throwOnError: false, maxSize: 20, maxExpand: 200 });
    } catch (_) { span.textContent = m.tex; }
  });
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
  if (m.plan || (m.agents && m.agents.length) || m.synthesis) view.append(agentsView(m));
  if (m.reasoning) {
    const details = el("details", "thinking");
    const best = !m.done && m.best ? ` (best answer so far: ${m.best})` : "";
    const summary = el("summary", null, m.done ? `Thought for ${m.stats ? m.stats.reasoning_tokens : "?"} tokens` : `Thinking…${best}`);
    summary.onclick = () => { m.showThinking = !details.open; };  // the reader's choice outlives redraws
    details.append(summary);
    details.append(el("div", "reasoning", m.reasoning));
    details.open = m.showThinking ?? !m.done;  // open while it streams, unless the reader closed it
    view.append(details);
  }
  for (const t of m.tools || []) view.append(el("div", "tool", `⚒ ${t.name}(${t.arguments}) → ${String(t.output).slice(0, 200)}`));
  if (!m.done && m.runId && !m.content && m.mode !== "instant") {  // still reasoning: it can be steered
    const controls = el("div", "actions steer");
    const now = el("button", "icon answer-now", "⏎ Answer now");
    now.title = "End the reasoning and answer from what it has";
    onPress(now, () => steer(m, "answer_now"));
    const longer = el("button", "icon think-longer", "⧗ Think longer");
    longer.title = "Give the reasoning 512 more tokens";
    onPress(longer, () => steer(m, "think_longer", { tokens: 512 }));
    controls.append(now, longer);
    if (m.note) controls.append(el("span", "note", m.note));
    view.append(controls);
  }
  const answer = el("div", "answer");
  renderMarkdown(answer, m.content || "");
  view.append(answer);
  if (m.error) view.append(el("div", "error-text", m.error));
  if (m.done) {
    if (typeof m.confidence === "number") {  // the evidence on hover, or opened by a tap
      const figures = evidenceText(m.evidence || {});
      const sure = el("details", "confidence");
      const summary = el("summary", null, `confidence ${Math.round(m.confidence * 100)}%`);
      summary.title = figures;
      summary.onclick = () => { m.showEvidence = !sure.open; };  // the reader's choice outlives redraws
      sure.append(summary, el("pre", "evidence", figures));
      sure.open = Boolean(m.showEvidence);
      view.append(sure);
    }
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
    if (a.status === "working" && !m.done && m.runId) {
      const halt = el("button", "icon stop-agent", "■ stop");
      halt.title = "Stop this agent; the others go on";
      onPress(halt, () => steer(m, "stop_agent", { agent: i }));
      head.append(halt);
    }
    card.append(head);
    if (a.reasoning) card.append(el("div", "reasoning", a.reasoning));
    if (a.result) {
      const result = el("div", "result answer");
      renderMarkdown(result, `→ ${a.result}`);
      card.append(result);
    }
    if (a.error) card.append(el("div", "error-text", a.error));
    if (a.note) card.append(el("div", "note", a.note));
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
    if (!state.conv || !state.controller) return;  // the chat was left, or the answer is drawn whole
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
  // a turn the server refused (a bad attachment, say) is not sent again with every later message
  const refused = (i) => messages[i + 1] && messages[i + 1].role === "assistant" && messages[i + 1].error && !messages[i + 1].content;
  return messages.filter((m, i) => !(m.role === "user" ? refused(i) : m.error && !m.content)).map((m) => {
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
  if (!EFFORTLESS.includes(state.mode)) body.reasoning_effort = $("#effort").value;
  if (s.temperature !== undefined && s.temperature !== "") body.temperature = Number(s.temperature);
  const positive = (v) => Number(v) > 0;
  if (s.budget !== undefined && s.budget !== "") body.thinking_budget = Number(s.budget);
  if (positive(s.maxTokens)) body.max_tokens = Number(s.maxTokens);
  if (state.mode === "contemplating" && (positive(s.agents) || positive(s.budget))) {
    body.contemplation = {};
    if (positive(s.agents)) body.contemplation.agents = Number(s.agents);
    if (positive(s.budget)) body.contemplation.agent_budget = Number(s.budget);  // each agent thinks within it too
  }
  return body;
}

async function send(text, attachments) {
  hideError();
  if (!state.conv) {
    const title = Array.from(text || (attachments[0] && attachments[0].name) || "New chat").slice(0, 60).join("");
    state.conv = await api("/app/api/conversations", { method: "POST", body: JSON.stringify({ title }) });
    history.replaceState(null, "", `#${encodeURIComponent(state.conv.id)}`);  // a reload comes back to it
  }
  state.conv.messages.push({ role: "user", content: text, attachments });
  await save();  // the question is kept even if the answer never finishes
  state.running = generate();
  await state.running;
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
      method: "POST", headers: authorized({ "content-type": "application/json" }),
      body: JSON.stringify(requestBody(history)), signal: controller.signal,
    });
    if (!response.ok) throw new ApiError(await errorOf(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { buffer += "\n\n"; } else { buffer += value.replace(/\r\n?/g, "\n"); }
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          let chunk;
          try { chunk = JSON.parse(line.slice(6)); } catch (_) { throw new ApiError("The server sent a malformed stream."); }
          if (chunk.error) throw new ApiError(chunk.error.message);
          if (chunk.id && !m.runId) m.runId = chunk.id;  // what the controls name it by
          if (chunk.usage) usage = chunk.usage;
          if (chunk.ponder) onProgress(m, chunk.ponder);
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (!delta) continue;
          const reasoning = delta.reasoning_content;
          if ((delta.content || reasoning) && first === null) first = performance.now();
          if (delta.content) m.content += delta.content;
          if (reasoning && m.mode !== "contemplating") m.reasoning += reasoning;
        }
      }
      if (done) break;
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
    const dropped = !p.ok && ["confidence", "stopped", "settled"].includes(p.stopped);
    const why = { stopped: "stopped by you", settled: "the others had settled the answer" }[p.stopped]
      || "less sure than the agents before it";
    Object.assign(m.agents[p.agent], { status: p.ok ? "done" : dropped ? "stopped" : "failed", result: p.answer,
                                       error: p.error, note: dropped ? why : null });
  } else if (p.type === "auto" && p.escalated) {
    const first = { chain: "first chain of reasoning", program: "program", direct: "direct answer" }[p.first];
    m.synthesis = `Auto: the ${first} was unsure (confidence ${p.confidence}); checking it…`;
  } else if (p.type === "synthesis.start") {
    const tally = Object.entries(p.tally || {}).map(([answer, weight]) => `${answer}: ${Number(weight).toFixed(2)}`);
    const how = { vote: "a vote", agreement: "the attempts agreed", judge: "a judge checked them",
                  pooled: "the letters and the options' likelihood, pooled",
                  split: "no majority, so the direct answer stands" }[p.method];
    m.synthesis = how ? `Synthesis: ${how} (${tally.join(", ")})` : "Synthesis: writing the answer…";
  } else if (p.type === "best") {
    m.best = p.answer;
  } else if (p.type === "evidence") {
    const { type, confidence, ...figures } = p;
    m.confidence = confidence;
    m.evidence = figures;
  } else if (p.type === "tool.call") {
    m.tools.push({ name: p.name, arguments: p.arguments, output: p.output });
  }
}

// The figures behind a confidence, one per line; a Contemplating answer written from
// sub-tasks lists each part's own.
function evidenceText(evidence) {
  return Object.entries(evidence).filter(([, v]) => v !== null).map(([k, v]) => k === "parts"
    ? v.map((p, i) => `part ${i + 1}: ${p.confidence === null ? "unknown" : `${Math.round(p.confidence * 100)}%`}`)
      .join("\n")
    : `${k.replace(/_/g, " ")}: ${v}`).join("\n");
}

// A button that acts on press (the view is redrawn while tokens stream, so a click
// could land on a replaced button), and on Enter or Space from the keyboard.
function onPress(button, act) {
  button.onpointerdown = act;
  button.onclick = (e) => { if (e.detail === 0) act(); };
}

// Steer the running answer (POST /v1/control): answer now, think longer, stop one agent.
async function steer(m, action, extra = {}) {
  if (!m.runId || m.done) return;
  try {
    await api("/v1/control", { method: "POST", body: JSON.stringify({ id: m.runId, action, ...extra }) });
    if (action === "think_longer") m.note = "Thinking longer…";
    if (action === "answer_now") m.note = "Answering now…";
  } catch (e) { showError(`Could not steer the answer: ${e.message}`); }
  redrawLast();
}

function setBusy(busy) {
  $("#send").hidden = busy;
  $("#stop").hidden = !busy;
}

function stop() { if (state.controller) state.controller.abort(); }

async function save() {
  if (!state.conv) return;
  try {
    await api(`/app/api/conversations/${encodeURIComponent(state.conv.id)}`, {
      method: "PUT", body: JSON.stringify({ messages: state.conv.messages }),
    });
    await refreshList();
  } catch (e) { showError(`Could not save the conversation: ${e.message}`); }
}

async function regenerate(index) {
  if (state.controller) return;
  state.conv.messages.splice(index);
  state.running = generate();
  await state.running;
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
      const response = await fetch("/v1/audio/transcriptions", { method: "POST", body: form, headers: authorized() });
      if (!response.ok) throw new ApiError(await errorOf(response));
      const { text } = await response.json();
      const typed = $("#input").value.trim();
      if (!text.trim()) return;
      if (typed || state.controller) $("#input").value = `${typed} ${text.trim()}`.trim();  // nothing lost
      else submit(text.trim());
    } catch (e) { showError(`Could not transcribe the recording: ${e.message}`); }
  };
  recorder.start();
  $("#mic").classList.add("recording");
}

async function speakAloud(text, button) {
  button.disabled = true;
  try {
    const response = await fetch("/v1/audio/speech", {
      method: "POST", headers: authorized({ "content-type": "application/json" }),
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
      const title = Array.from(input.value.trim()).slice(0, 200).join("");
      try {
        await api(`/app/api/conversations/${encodeURIComponent(c.id)}`, { method: "PUT", body: JSON.stringify({ title }) });
        if (state.conv && state.conv.id === c.id) state.conv.title = title;
      } catch (e) { showError(`Could not rename: ${e.message}`); }
    }
    await refreshList();
  };
  input.onkeydown = (e) => { if (e.key === "Enter") done(true); if (e.key === "Escape") done(false); };
  input.onblur = () => done(true);
}

async function removeConversation(c) {
  if (!confirm(`Delete "${c.title}"?`)) return;
  try {
    await api(`/app/api/conversations/${encodeURIComponent(c.id)}`, { method: "DELETE" });
  } catch (e) { showError(`Could not delete: ${e.message}`); return; }
  if (state.conv && state.conv.id === c.id) await newChat();
  await refreshList();
}

async function leaveChat() {  // stop what is running, and let it save, before another chat comes up
  if (!state.controller) return;
  stop();
  await state.running;
}

async function openConversation(id) {
  if (state.conv && state.conv.id === id && !state.controller) return;
  await leaveChat();
  try {
    state.conv = await api(`/app/api/conversations/${encodeURIComponent(id)}`);
  } catch (e) { showError(e.message); return; }
  history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  $("#layout").classList.remove("sidebar-open");
  renderAll();
  await refreshList();
}

async function newChat() {
  await leaveChat();
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
  const chosen = select.value || stored("ponder.model", null);
  select.replaceChildren(...models.data.map((m) => { const o = el("option", null, m.id); o.value = m.id; return o; }));
  if (chosen && models.data.some((m) => m.id === chosen)) select.value = chosen;
}

function setMode(mode) {
  state.mode = mode;
  keep("ponder.mode", mode);
  document.querySelectorAll("#modes button").forEach((b) => b.setAttribute("aria-checked", String(b.dataset.mode === mode)));
  $("#effort").disabled = EFFORTLESS.includes(mode);
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  keep("ponder.theme", theme);
  $("#hljs-dark").disabled = theme !== "dark";
  $("#hljs-light").disabled = theme === "dark";
}

function askForKey() {
  if (!$("#settings").open) $("#settings").showModal();
  $("#key-hint").hidden = false;
  $("#set-key").focus();
}

function bindSettings() {
  $("#set-key").value = stored("ponder.key", "") || "";
  $("#set-key").onchange = async () => {
    keep("ponder.key", $("#set-key").value.trim());
    $("#key-hint").hidden = true;
    hideError();
    await loadModels();
    await refreshList();
  };
  const fields = { temperature: "#set-temperature", budget: "#set-budget", agents: "#set-agents", maxTokens: "#set-max-tokens" };
  for (const [key, sel] of Object.entries(fields)) {
    $(sel).value = state.settings[key] ?? "";
    $(sel).onchange = () => {
      state.settings[key] = $(sel).value;
      keep("ponder.settings", state.settings);
    };
  }
}

// --- wiring -------------------------------------------------------------------------------------

function submit(text) {
  const attachments = state.attachments;
  if (state.controller || (!text && !attachments.length)) return;  // busy: what was typed stays
  state.attachments = [];
  renderAttachments();
  $("#input").value = "";
  send(text, attachments).catch((e) => {
    if (!state.conv || !state.conv.messages.length) {  // nothing was sent: give the text back
      $("#input").value = text;
      state.attachments = attachments;
      renderAttachments();
    }
    if (!reconnecting) showError(e.message);
  });
}

function start() {
  setUpMarkdown();
  const template = document.createElement("template");
  template.id = "empty-template";
  template.content.append($("#empty"));
  document.body.append(template);

  setTheme(stored("ponder.theme", null) === "dark" || (stored("ponder.theme", null) === null && matchMedia("(prefers-color-scheme: dark)").matches) ? "dark" : "light");
  setMode(state.mode);
  bindSettings();
  document.querySelectorAll("#modes button").forEach((b) => { b.onclick = () => setMode(b.dataset.mode); });
  $("#theme").onclick = () => setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  $("#settings-button").onclick = () => $("#settings").showModal();
  $("#model").onchange = () => keep("ponder.model", $("#model").value);
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
    const elsewhere = $("#settings").open || (e.target.matches && e.target.matches("input"));
    if (e.key === "Escape" && state.controller && !elsewhere) { e.preventDefault(); stop(); }
    else if (mod && e.shiftKey && e.key.toLowerCase() === "o") { e.preventDefault(); newChat(); }
    else if (mod && e.key.toLowerCase() === "k") { e.preventDefault(); $("#search").focus(); }
  });

  renderAll();
  loadModels();
  refreshList();
  if (location.hash.length > 1) openConversation(decodeURIComponent(location.hash.slice(1)));
}

document.addEventListener("DOMContentLoaded", start);
