// The constrain Playground: vanilla JS, no build step, no third-party code; talks to this origin's API.
"use strict";

const STORE = "constrain.playground.v1"; // localStorage: the whole state, never the API key
const KEY_STORE = "constrain.apiKey"; // sessionStorage: the key, for this tab only
const ROLES = ["user", "assistant", "system", "tool"];

const SCHEMA_EXAMPLES = {
  person: {type: "object", properties: {name: {type: "string", maxLength: 30}, age: {type: "integer", minimum: 0, maximum: 120}}, required: ["name", "age"]},
  event: {type: "object", properties: {title: {type: "string", maxLength: 40}, date: {type: "string", format: "date"}, attendees: {type: "array", items: {type: "string", maxLength: 20}, maxItems: 3}}, required: ["title", "date"]},
  sentiment: {type: "object", properties: {sentiment: {enum: ["positive", "neutral", "negative"]}, confidence: {type: "number", minimum: 0, maximum: 1}}, required: ["sentiment", "confidence"]},
  "invalid (for the error view)": {type: "object", properties: {age: {type: "integr"}}},
};
const REGEX_EXAMPLES = {"ISO date": "20\\d\\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])", "yes or no": "(yes|no)", "phone": "\\+1 \\d{3}-\\d{3}-\\d{4}"};
const TOOLS_EXAMPLE = [{type: "function", function: {name: "get_weather", description: "Current weather in a city",
  parameters: {type: "object", properties: {city: {type: "string", maxLength: 30}}, required: ["city"]}}}];
const PARAMS = [ // name, label, placeholder (the API's default)
  ["temperature", "temperature (0-2)", "1"], ["top_p", "top_p (0-1]", "1"], ["max_tokens", "max_tokens", "server limit"],
  ["seed", "seed", "none"], ["frequency_penalty", "frequency_penalty (-2-2)", "0"],
  ["presence_penalty", "presence_penalty (-2-2)", "0"], ["top_logprobs", "top_logprobs (0-5)", "none"],
];

function defaultPane() {
  return {
    model: "", temperature: "0", top_p: "", max_tokens: "48", seed: "", stop: "", frequency_penalty: "",
    presence_penalty: "", top_logprobs: "", logprobs: false, stream: true,
    format: "text", schema: JSON.stringify(SCHEMA_EXAMPLES.person, null, 2), regex: REGEX_EXAMPLES["ISO date"], grammar: "",
    toolsOn: false, tools: JSON.stringify(TOOLS_EXAMPLE, null, 2), tool_choice: "auto", tool_prompt: "", parallel: true,
  };
}
function defaultState() {
  return {system: "", messages: [], compare: false, panes: [defaultPane(), defaultPane()], view: "ui", lang: "python-hf", codePane: 0};
}

let state = defaultState();
const results = [null, null]; // per pane, not saved: the last answer, its tokens and timings
const running = new Set(); // AbortControllers of generations in flight
let models = [];
let modelCards = {}; // id -> the /v1/models entry (with capabilities such as `images` where the server lists them)
let grammars = {};
let keysRequired = false;

// ----------------------------------------------------------------------------- small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const paneEl = (i) => $(`.pane[data-pane="${i}"]`);

function save() {
  try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { status("state not saved: " + e.message); }
}
function status(text) { $("#status").textContent = text; }

function b64urlEncode(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function b64urlDecode(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

function loadState() {
  const hash = location.hash;
  if (hash.startsWith("#s=")) { // a shared link wins over what this browser kept
    try {
      state = Object.assign(defaultState(), JSON.parse(b64urlDecode(hash.slice(3))));
      history.replaceState(null, "", location.pathname);
      save();
      status("conversation restored from the link");
      return;
    } catch (e) { status("the shared link could not be read: " + e.message); }
  }
  try {
    const kept = JSON.parse(localStorage.getItem(STORE) || "null");
    if (kept) state = Object.assign(defaultState(), kept);
  } catch (e) { /* a damaged entry: start fresh */ }
  state.panes = state.panes.map((p) => Object.assign(defaultPane(), p));
}

// ----------------------------------------------------------------------------- the API

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? {authorization: "Bearer " + key} : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, Object.assign({}, options, {headers: Object.assign({}, options.headers || {}, authHeaders())}));
  if (res.status === 401) {
    keysRequired = true;
    $("#key-button").hidden = false;
    askKey();
  }
  return res;
}

function askKey() {
  const dialog = $("#key-dialog");
  if (!dialog.open) dialog.showModal();
  $("#api-key").focus();
}

async function loadModels() {
  try {
    const res = await api("/v1/models", {headers: {"x-wait-for-model": "true"}});
    if (!res.ok) { status(`models: HTTP ${res.status}`); return; }
    const cards = (await res.json()).data;
    models = cards.map((m) => m.id);
    modelCards = Object.fromEntries(cards.map((m) => [m.id, m]));
    status("");
  } catch (e) { status("models: " + e.message); }
  state.panes.forEach((p) => { if (!p.model || !models.includes(p.model)) p.model = models[0] || p.model; });
  renderPanes();
  renderMessages();
}

async function loadGrammars() {
  try { grammars = await (await fetch("/playground/grammars.json")).json(); } catch (e) { grammars = {}; }
}

function numberOrText(raw) { // sent as typed when it is not a number: the API's message then names the field
  const text = String(raw).trim();
  if (text === "") return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : text;
}

function wireMessages() {
  const out = [];
  if (state.system.trim()) out.push({role: "system", content: state.system});
  for (const m of state.messages) {
    const msg = {role: m.role};
    if (m.images && m.images.length && m.role === "user") {
      msg.content = [{type: "text", text: m.content}, ...m.images.map((url) => ({type: "image_url", image_url: {url}}))];
    } else msg.content = m.content;
    if (m.role === "assistant" && m.tool_calls && m.tool_calls.length) {
      msg.tool_calls = m.tool_calls;
      if (!m.content) msg.content = null;
    }
    if (m.role === "tool") msg.tool_call_id = m.tool_call_id || "";
    out.push(msg);
  }
  return out;
}

function responseFormat(p) {
  if (p.format === "json") {
    let value = p.schema;
    try { value = JSON.parse(p.schema); } catch (e) { /* sent as text: the API reports where it breaks */ }
    return {type: "json", value};
  }
  if (p.format === "regex") return {type: "regex", value: p.regex};
  if (p.format === "grammar") return {type: "grammar", value: p.grammar};
  return undefined;
}

// The request a pane sends; `forPage` adds what only the page reads (the token view).
function buildRequest(i, forPage) {
  const p = state.panes[i];
  const req = {model: p.model || undefined, messages: wireMessages()};
  for (const [name] of PARAMS) {
    const v = numberOrText(p[name]);
    if (v !== undefined) req[name] = v;
  }
  const stops = p.stop.split("\n").filter((s) => s !== "");
  if (stops.length) req.stop = stops;
  if (p.logprobs) req.logprobs = true; // top_logprobs without it goes as typed: the API explains
  const format = responseFormat(p);
  if (format) req.response_format = format;
  if (p.toolsOn) {
    let tools = p.tools;
    try { tools = JSON.parse(p.tools); } catch (e) { /* the API names the field */ }
    req.tools = tools;
    if (p.tool_choice.trim()) req.tool_choice = p.tool_choice.trim();
    if (p.tool_prompt.trim()) req.tool_prompt = p.tool_prompt;
    if (!p.parallel) req.parallel_tool_calls = false;
  }
  if (p.stream) {
    req.stream = true;
    req.stream_options = {include_usage: true};
  }
  if (forPage) req.token_info = true;
  return req;
}

// ----------------------------------------------------------------------------- errors next to their controls

function clearErrors(i) {
  for (const el of paneEl(i).querySelectorAll(".field-error")) el.textContent = "";
  paneEl(i).querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  $("#conversation-error").textContent = "";
}

function pointerOf(param, prefix) { // response_format.value.properties.age -> /properties/age
  const rest = param.slice(prefix.length).replace(/^\./, "");
  return "/" + rest.split(".").filter((s) => s !== "").join("/");
}

// Where a JSON pointer's value sits in JSON text: [start, end) offsets, or null. A small scanner,
// so that the schema editor can select the place an error names.
function locatePointer(text, pointer) {
  const want = pointer.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  let pos = 0;
  const ws = () => { while (pos < text.length && " \t\r\n".includes(text[pos])) pos++; };
  const str = () => { const start = pos++; while (pos < text.length && text[pos] !== '"') pos += text[pos] === "\\" ? 2 : 1; pos++; return JSON.parse(text.slice(start, pos)); };
  function value(depth) { // returns [start, end] of the target when found below, else null
    ws();
    const start = pos;
    const here = depth === want.length;
    if (text[pos] === "{" || text[pos] === "[") {
      const close = text[pos] === "{" ? "}" : "]";
      let index = 0;
      let found = null;
      pos++;
      ws();
      while (pos < text.length && text[pos] !== close) {
        let key = String(index++);
        if (close === "}") { key = str(); ws(); pos++; }
        const hit = value(depth + 1);
        if (!found && !here && key === want[depth] && depth < want.length) found = hit;
        ws();
        if (text[pos] === ",") { pos++; ws(); }
      }
      pos++;
      return here ? [start, pos] : found;
    }
    if (text[pos] === '"') str();
    else while (pos < text.length && !",}] \t\r\n".includes(text[pos])) pos++;
    return here ? [start, pos] : null;
  }
  try { return value(0); } catch (e) { return null; }
}

function showError(i, error) {
  const param = error.param || "";
  const root = paneEl(i);
  let slot = null;
  let text = error.message;
  const field = param.split(".")[0];
  if (param.startsWith("response_format.value") || param.startsWith("response_format.json_schema")) {
    slot = $('[data-error-for="response_format"]', root);
    const ptr = pointerOf(param, param.startsWith("response_format.value") ? "response_format.value" : "response_format.json_schema.schema");
    slot.dataset.pointer = ptr;
    const editor = $(`#p${i}-schema`);
    const range = state.panes[i].format === "json" ? locatePointer(editor.value, ptr) : null;
    if (range) { // select the place in the editor, and say which line it is on
      const line = editor.value.slice(0, range[0]).split("\n").length;
      text = `at ${ptr} (line ${line}): ${error.message}`;
      editor.focus();
      editor.setSelectionRange(range[0], range[1]);
      slot.dataset.selected = editor.value.slice(range[0], range[1]);
    } else text = `at ${ptr}: ${error.message}`;
  } else if (field === "response_format") slot = $('[data-error-for="response_format"]', root);
  else if (["tools", "tool_choice", "tool_prompt", "parallel_tool_calls"].includes(field)) slot = $(`[data-error-for="${field}"]`, root) || $('[data-error-for="tools"]', root);
  else if (field === "max_completion_tokens") slot = $('[data-error-for="max_tokens"]', root);
  else if (field === "messages") {
    slot = $("#conversation-error");
    const n = Number(param.split(".")[1]);
    if (Number.isInteger(n)) {
      const shown = n - (state.system.trim() ? 1 : 0);
      text = (shown < 0 ? "system prompt: " : `message ${shown + 1}: `) + error.message;
    }
  } else slot = $(`[data-error-for="${field}"]`, root);
  if (!slot) slot = $(".pane-error", root);
  slot.textContent = text;
  const control = slot.dataset.control ? document.getElementById(slot.dataset.control) : null;
  if (control) control.setAttribute("aria-invalid", "true");
}

// ----------------------------------------------------------------------------- generation

function newResult() {
  return {content: "", calls: [], tokens: [], finish: null, usage: null, t0: performance.now(), tFirst: null, tEnd: null, error: null};
}

function applyDelta(r, choice) {
  const d = choice.delta || {};
  if (d.content) r.content += d.content;
  for (const tc of d.tool_calls || []) {
    const call = r.calls[tc.index] || (r.calls[tc.index] = {id: "", type: "function", function: {name: "", arguments: ""}});
    if (tc.id) call.id = tc.id;
    if (tc.function && tc.function.name) call.function.name += tc.function.name;
    if (tc.function && tc.function.arguments) call.function.arguments += tc.function.arguments;
  }
  if (choice.token_info) r.tokens.push(...choice.token_info);
  if (choice.finish_reason) r.finish = choice.finish_reason;
  if ((d.content || d.tool_calls || choice.token_info) && r.tFirst === null) r.tFirst = performance.now();
}

async function readStream(res, r, onUpdate) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) { r.error = chunk.error; return; }
        if (chunk.usage) r.usage = chunk.usage;
        for (const choice of chunk.choices || []) applyDelta(r, choice);
        onUpdate();
      }
    }
  }
}

async function runPane(i, target) {
  const controller = new AbortController();
  running.add(controller);
  const r = newResult();
  results[i] = r;
  clearErrors(i);
  renderOutput(i);
  const req = buildRequest(i, true);
  const update = () => {
    renderOutput(i);
    if (target) {
      target.message.content = r.content;
      const box = $(`#messages li[data-index="${target.index}"] textarea.content`);
      if (box) box.value = r.content;
    }
  };
  try {
    const res = await api("/v1/chat/completions", {
      method: "POST", signal: controller.signal,
      headers: {"content-type": "application/json", "x-wait-for-model": "true"}, body: JSON.stringify(req),
    });
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch (e) { /* not JSON */ }
      r.error = (body && body.error) || {message: `HTTP ${res.status}`};
    } else if (req.stream) {
      await readStream(res, r, update);
    } else {
      const body = await res.json();
      r.tFirst = performance.now();
      const choice = body.choices[0];
      r.content = choice.message.content || "";
      r.calls = choice.message.tool_calls || [];
      r.tokens = choice.token_info || [];
      r.finish = choice.finish_reason;
      r.usage = body.usage;
    }
  } catch (e) {
    r.error = {message: e.name === "AbortError" ? "stopped" : e.message};
  } finally {
    running.delete(controller);
  }
  r.tEnd = performance.now();
  if (r.error) showError(i, r.error);
  if (target) {
    if (r.calls.length) target.message.tool_calls = r.calls;
    target.message.content = r.content;
    if (r.error && !r.content && !r.calls.length) state.messages.splice(state.messages.indexOf(target.message), 1);
    save();
    renderMessages();
  }
  renderOutput(i);
}

async function generate() {
  const text = $("#new-content").value;
  if (text.trim()) addMessage();
  if (!state.messages.length && !state.system.trim()) {
    $("#conversation-error").textContent = "add a message first";
    return;
  }
  const panes = state.compare ? [0, 1] : [0];
  let target = null;
  if (!state.compare) { // the answer streams into the conversation
    const message = {role: "assistant", content: ""};
    state.messages.push(message);
    renderMessages();
    target = {message, index: state.messages.length - 1};
  }
  $("#generate").disabled = true;
  $("#stop").hidden = false;
  try {
    await Promise.all(panes.map((i) => runPane(i, i === 0 ? target : null)));
  } finally {
    $("#generate").disabled = false;
    $("#stop").hidden = true;
    save();
  }
}

function keepAnswer(i) {
  const r = results[i];
  if (!r) return;
  const message = {role: "assistant", content: r.content};
  if (r.calls.length) message.tool_calls = r.calls;
  state.messages.push(message);
  save();
  renderMessages();
}

// ----------------------------------------------------------------------------- conversation

function addMessage() {
  const role = $("#new-role").value;
  state.messages.push({role, content: $("#new-content").value});
  $("#new-content").value = "";
  $("#new-role").value = role === "user" ? "user" : role;
  save();
  renderMessages();
}

function move(index, by) {
  const to = index + by;
  if (to < 0 || to >= state.messages.length) return;
  const [m] = state.messages.splice(index, 1);
  state.messages.splice(to, 0, m);
  save();
  renderMessages();
  const button = $(`#messages li[data-index="${to}"] .${by < 0 ? "up" : "down"}`);
  if (button) button.focus();
}

function regenerateFrom(index) {
  const m = state.messages[index];
  state.messages = state.messages.slice(0, m.role === "assistant" ? index : index + 1);
  save();
  renderMessages();
  generate();
}

function readImage(file) { // downscaled to at most 1024 px, as a JPEG data URL
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onerror = () => reject(reader.error);
    reader.onload = () => {
      const img = new Image();
      img.onerror = () => resolve(reader.result);
      img.onload = () => {
        const scale = Math.min(1, 1024 / Math.max(img.width, img.height));
        if (scale === 1 && file.size < 512 * 1024) { resolve(reader.result); return; }
        const canvas = document.createElement("canvas");
        canvas.width = Math.round(img.width * scale);
        canvas.height = Math.round(img.height * scale);
        canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
        resolve(canvas.toDataURL("image/jpeg", 0.85));
      };
      img.src = reader.result;
    };
    reader.readAsDataURL(file);
  });
}

function renderCalls(calls, onResult) {
  return h("ul", {class: "calls"}, calls.map((c) => h("li", {class: "call"},
    h("span", {class: "call-label", text: "tool call"}),
    h("code", {class: "call-name", text: c.function.name}),
    h("code", {class: "call-args", text: c.function.arguments}),
    c.id ? h("span", {class: "call-id", text: c.id}) : null,
    onResult ? h("button", {type: "button", class: "add-result", text: "Add result", onclick: () => onResult(c)}) : null)));
}

function renderMessages() {
  const list = $("#messages");
  list.replaceChildren();
  state.messages.forEach((m, index) => {
    const n = index + 1;
    const roleId = `msg-${index}-role`;
    const contentId = `msg-${index}-content`;
    const li = h("li", {class: `message role-${m.role}`, "data-index": index});
    const role = h("select", {id: roleId, class: "role", onchange: (e) => { m.role = e.target.value; save(); renderMessages(); }},
      ROLES.map((r) => h("option", {value: r, text: r})));
    role.value = m.role;
    const tools = h("div", {class: "message-tools"},
      h("button", {type: "button", class: "up", "aria-label": `Move message ${n} up`, title: "Move up", text: "↑", onclick: () => move(index, -1)}),
      h("button", {type: "button", class: "down", "aria-label": `Move message ${n} down`, title: "Move down", text: "↓", onclick: () => move(index, 1)}),
      h("button", {type: "button", class: "regen", "aria-label": `Regenerate from message ${n}`, title: "Regenerate from here", text: "↻", onclick: () => regenerateFrom(index)}),
      h("button", {type: "button", class: "delete", "aria-label": `Delete message ${n}`, title: "Delete", text: "✕",
        onclick: () => { state.messages.splice(index, 1); save(); renderMessages(); }}));
    li.append(h("div", {class: "message-head"}, h("label", {for: roleId, text: `Message ${n} role`}), role, tools));
    if (m.role === "tool") {
      const idField = `msg-${index}-call-id`;
      li.append(h("div", {class: "row"}, h("label", {for: idField, text: "tool_call_id"}),
        h("input", {id: idField, class: "tool-call-id", value: m.tool_call_id || "", oninput: (e) => { m.tool_call_id = e.target.value; save(); }})));
    }
    li.append(h("label", {for: contentId, class: "visually-hidden", text: `Message ${n} content`}),
      h("textarea", {id: contentId, class: "content", rows: 2, value: m.content || "", oninput: (e) => { m.content = e.target.value; save(); }}));
    if (m.role === "assistant" && m.tool_calls && m.tool_calls.length) {
      li.append(renderCalls(m.tool_calls, (c) => {
        state.messages.splice(index + 1, 0, {role: "tool", tool_call_id: c.id, content: ""});
        save();
        renderMessages();
        const box = $(`#messages li[data-index="${index + 1}"] textarea.content`);
        if (box) box.focus();
      }));
    }
    if (m.role === "user") {
      const fileId = `msg-${index}-image`;
      const images = h("div", {class: "images"}, (m.images || []).map((url, k) => h("figure", {},
        h("img", {src: url, alt: `image ${k + 1} of message ${n}`}),
        h("button", {type: "button", "aria-label": `Remove image ${k + 1} of message ${n}`, text: "✕",
          onclick: () => { m.images.splice(k, 1); save(); renderMessages(); }}))));
      const card = modelCards[state.panes[0].model];
      const textOnly = card && card.images === false;
      li.append(images, h("div", {class: "row attach"}, h("label", {for: fileId, text: textOnly ? "Attach image (this model reads text only)" : "Attach image"}),
        h("input", {type: "file", id: fileId, accept: "image/*", multiple: true, onchange: async (e) => {
          m.images = m.images || [];
          for (const file of e.target.files) m.images.push(await readImage(file));
          save();
          renderMessages();
        }})));
    }
    list.append(li);
  });
}

// ----------------------------------------------------------------------------- panes

function field(i, name, label, control, hint) {
  const id = `p${i}-${name}`;
  control.id = id;
  return h("div", {class: "field"}, h("label", {for: id, text: label}), control, hint || null,
    h("div", {class: "field-error", role: "alert", "data-error-for": name, "data-control": id}));
}

function bind(i, name, el, kind = "value") {
  const p = state.panes[i];
  if (kind === "checked") el.checked = !!p[name];
  else el.value = p[name];
  el.addEventListener(kind === "checked" ? "change" : "input", () => {
    p[name] = kind === "checked" ? el.checked : el.value;
    save();
    if (state.view === "code") renderCode();
  });
  return el;
}

function buildPane(i) {
  const p = state.panes[i];
  const name = "AB"[i];
  const root = h("section", {class: "pane", "data-pane": i, "aria-label": `Pane ${name}`});
  const model = h("select", {}, (models.length ? models : [p.model || "(loading)"]).map((m) => h("option", {value: m, text: m})));
  bind(i, "model", model, "value");
  root.append(h("h2", {text: `Pane ${name}`}), field(i, "model", "Model", model));
  // The answer first, the settings under it: side by side in compare mode, the answers line up.
  root.append(h("div", {class: "output", "aria-label": `Answer of pane ${name}`},
    h("div", {class: "badge", role: "status"}),
    h("div", {class: "answer", "aria-live": "polite"}),
    h("div", {class: "answer-calls"}),
    h("div", {class: "legend", "aria-label": "Token counts by how they were chosen"}),
    h("div", {class: "tokens", "aria-label": "Tokens of the answer"}),
    h("div", {class: "token-detail", "aria-live": "polite"}),
    h("div", {class: "stats"}),
    h("div", {class: "pane-error field-error", role: "alert"}),
    h("button", {type: "button", class: "keep", hidden: true, text: "Add this answer to the conversation", onclick: () => keepAnswer(i)})));

  const params = h("div", {class: "grid"}, PARAMS.map(([k, label, ph]) =>
    field(i, k, label, bind(i, k, h("input", {type: "text", inputmode: "decimal", placeholder: ph, autocomplete: "off"})))));
  params.append(field(i, "stop", "stop (one per line)", bind(i, "stop", h("textarea", {rows: 1}))));
  params.append(h("div", {class: "checks"},
    h("label", {}, bind(i, "logprobs", h("input", {type: "checkbox", id: `p${i}-logprobs`}), "checked"), " logprobs"),
    h("label", {}, bind(i, "stream", h("input", {type: "checkbox", id: `p${i}-stream`}), "checked"), " stream"),
    h("div", {class: "field-error", role: "alert", "data-error-for": "logprobs"}),
    h("div", {class: "field-error", role: "alert", "data-error-for": "stream"})));
  root.append(h("details", {class: "params", open: true}, h("summary", {text: "Parameters"}), params));

  // Constraint: one editor per kind, shown by the selected kind.
  const kind = bind(i, "format", h("select", {}, [["text", "text (no constraint)"], ["json", "JSON Schema"], ["regex", "regex"], ["grammar", "Lark grammar"]]
    .map(([v, t]) => h("option", {value: v, text: t}))));
  const schema = bind(i, "schema", h("textarea", {rows: 8, spellcheck: "false", class: "code"}));
  const schemaExample = h("select", {"aria-label": "Example schemas", onchange: (e) => {
    if (!e.target.value) return;
    p.schema = JSON.stringify(SCHEMA_EXAMPLES[e.target.value], null, 2);
    schema.value = p.schema;
    e.target.value = "";
    save();
  }}, h("option", {value: "", text: "examples…"}), Object.keys(SCHEMA_EXAMPLES).map((k) => h("option", {value: k, text: k})));
  const regex = bind(i, "regex", h("input", {type: "text", spellcheck: "false", class: "code"}));
  const regexExample = h("select", {"aria-label": "Example patterns", onchange: (e) => {
    if (!e.target.value) return;
    p.regex = REGEX_EXAMPLES[e.target.value];
    regex.value = p.regex;
    e.target.value = "";
    save();
  }}, h("option", {value: "", text: "examples…"}), Object.keys(REGEX_EXAMPLES).map((k) => h("option", {value: k, text: k})));
  const grammar = bind(i, "grammar", h("textarea", {rows: 8, spellcheck: "false", class: "code"}));
  const shipped = h("select", {"aria-label": "Shipped grammars", onchange: (e) => {
    if (!e.target.value) return;
    p.grammar = grammars[e.target.value];
    grammar.value = p.grammar;
    e.target.value = "";
    save();
  }}, h("option", {value: "", text: "shipped grammars…"}), Object.keys(grammars).map((k) => h("option", {value: k, text: k})));
  const editors = {
    json: h("div", {class: "editor", "data-kind": "json"}, field(i, "schema", "JSON Schema", schema, schemaExample)),
    regex: h("div", {class: "editor", "data-kind": "regex"}, field(i, "regex", "Pattern (the whole answer matches)", regex, regexExample)),
    grammar: h("div", {class: "editor", "data-kind": "grammar"}, field(i, "grammar", "Lark grammar", grammar, shipped)),
  };
  const showEditor = () => { for (const [k, el] of Object.entries(editors)) el.hidden = k !== kind.value; };
  kind.addEventListener("change", showEditor);
  showEditor();
  root.append(h("details", {class: "constraint", open: true}, h("summary", {text: "Response format"}),
    field(i, "format", "Constraint", kind), ...Object.values(editors),
    h("div", {class: "field-error", role: "alert", "data-error-for": "response_format", "data-control": `p${i}-schema`})));

  const tools = h("details", {class: "tools", open: p.toolsOn || undefined}, h("summary", {text: "Tools"}),
    h("label", {}, bind(i, "toolsOn", h("input", {type: "checkbox", id: `p${i}-toolsOn`}), "checked"), " send tools"),
    field(i, "tools", "Tool definitions (JSON)", bind(i, "tools", h("textarea", {rows: 6, spellcheck: "false", class: "code"}))),
    h("div", {class: "grid"},
      field(i, "tool_choice", "tool_choice (auto, required, none or a name)", bind(i, "tool_choice", h("input", {type: "text"}))),
      field(i, "tool_prompt", "tool_prompt", bind(i, "tool_prompt", h("input", {type: "text"})))),
    h("label", {}, bind(i, "parallel", h("input", {type: "checkbox", id: `p${i}-parallel`}), "checked"), " parallel tool calls"),
    h("div", {class: "field-error", role: "alert", "data-error-for": "parallel_tool_calls"}));
  root.append(tools);

  return root;
}

function renderPanes() {
  const box = $("#panes");
  box.replaceChildren(buildPane(0), ...(state.compare ? [buildPane(1)] : []));
  box.classList.toggle("two", state.compare);
  renderOutput(0);
  if (state.compare) renderOutput(1);
}

const fmt = (x) => (typeof x === "number" ? x.toFixed(3) : "-inf"); // JSON has no -Infinity

function tokenTitle(t) {
  const top = (t.top || []).map((a) => `${JSON.stringify(a.text)} ${fmt(a.logprob)}`).join("\n");
  return `${t.how} · logprob ${fmt(t.logprob)}` + (top ? `\ntop:\n${top}` : "");
}

function showTokenDetail(root, t) {
  const detail = $(".token-detail", root);
  detail.replaceChildren(h("div", {}, h("code", {text: JSON.stringify(t.text)}), ` ${t.how}, logprob ${fmt(t.logprob)}`),
    h("table", {}, h("tbody", {}, (t.top || []).map((a) => h("tr", {}, h("td", {}, h("code", {text: JSON.stringify(a.text)})), h("td", {text: fmt(a.logprob)}))))));
}

function badgeOf(i, r) {
  if (r.error) return ["error", r.error.type === "authentication_error" ? "needs an API key" : "error"];
  if (!r.finish) return ["running", "generating…"];
  const p = state.panes[i];
  const closed = r.tokens.some((t) => t.how === "closer");
  if (r.finish === "tool_calls") return ["ok", "✓ tool calls (finish_reason: tool_calls)"];
  if (r.calls.length) return ["warn", `tool calls${closed ? ", closed by the budget closer" : ""} (finish_reason: ${r.finish})`];
  if (p.format === "json") {
    let parses = true;
    try { JSON.parse(r.content); } catch (e) { parses = false; }
    if (r.finish === "stop" && parses) return ["ok", "✓ valid against the schema (finish_reason: stop)"];
    if (r.finish === "length" && parses && closed) return ["warn", "✓ valid, closed by the budget closer (finish_reason: length)"];
    return ["warn", `not complete: finish_reason ${r.finish}` + (r.finish === "length" ? " (max_tokens reached)" : "")];
  }
  if (p.format === "regex" || p.format === "grammar") {
    if (r.finish === "stop") return ["ok", `✓ matches the ${p.format === "regex" ? "pattern" : "grammar"} (finish_reason: stop)`];
    return ["warn", `not complete: finish_reason ${r.finish}` + (closed ? " (closed by the budget closer)" : "")];
  }
  return [r.finish === "stop" ? "ok" : "warn", `finish_reason: ${r.finish}`];
}

function renderOutput(i) {
  const root = paneEl(i);
  if (!root) return;
  const r = results[i];
  const answer = $(".answer", root);
  const tokens = $(".tokens", root);
  if (!r) {
    answer.textContent = "";
    tokens.replaceChildren();
    return;
  }
  const [kind, label] = badgeOf(i, r);
  const badge = $(".badge", root);
  badge.className = `badge ${kind}`;
  badge.textContent = label;
  badge.dataset.finish = r.finish || "";
  answer.textContent = r.content;
  $(".answer-calls", root).replaceChildren(r.calls.length ? renderCalls(r.calls) : "");
  tokens.replaceChildren(...r.tokens.map((t, k) => h("span", {class: `tok ${t.how}`, tabindex: 0, "data-i": k, "data-how": t.how,
    title: tokenTitle(t), text: t.text, onmouseenter: () => showTokenDetail(root, t), onfocus: () => showTokenDetail(root, t)})));
  const counts = {sampled: 0, forced: 0, closer: 0};
  for (const t of r.tokens) counts[t.how] += 1;
  $(".legend", root).replaceChildren(...(r.tokens.length ? Object.entries(counts).map(([k, n]) =>
    h("span", {class: `tok ${k}`, text: `${k} ${n}`})) : []));
  const parts = [];
  if (r.usage) parts.push(`prompt ${r.usage.prompt_tokens} · completion ${r.usage.completion_tokens} tokens`);
  if (r.tFirst !== null) parts.push(`first token ${Math.round(r.tFirst - r.t0)} ms`);
  if (r.tEnd !== null && r.usage && r.tFirst !== null && r.usage.completion_tokens > 1 && r.tEnd > r.tFirst) {
    // After the first token: the decoding rate, without the prompt's prefill and the queue.
    parts.push(`${((r.usage.completion_tokens - 1) / ((r.tEnd - r.tFirst) / 1000)).toFixed(1)} tokens/s`);
  }
  $(".stats", root).textContent = parts.join(" · ");
  $(".keep", root).hidden = !(state.compare && r.finish && !r.error);
}

// ----------------------------------------------------------------------------- code view

function pyLiteral(v, indent = "") {
  const inner = indent + "    ";
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return "[\n" + v.map((x) => inner + pyLiteral(x, inner)).join(",\n") + ",\n" + indent + "]";
  }
  const keys = Object.keys(v);
  if (!keys.length) return "{}";
  return "{\n" + keys.map((k) => `${inner}${JSON.stringify(k)}: ${pyLiteral(v[k], inner)}`).join(",\n") + ",\n" + indent + "}";
}

function pyKwargs(obj, indent) {
  return Object.entries(obj).map(([k, v]) => `${indent}${k}=${pyLiteral(v, indent)},`).join("\n");
}

function split(req, native) { // (keyword arguments the client knows, the rest for extra_body)
  const known = {};
  const extra = {};
  for (const [k, v] of Object.entries(req)) (native.includes(k) ? known : extra)[k] = v;
  return [known, extra];
}

const HF_NATIVE = ["messages", "model", "stream", "frequency_penalty", "logprobs", "max_tokens", "presence_penalty", "response_format",
  "seed", "stop", "stream_options", "temperature", "tool_choice", "tool_prompt", "tools", "top_logprobs", "top_p"];
const OPENAI_NATIVE = ["messages", "model", "stream", "frequency_penalty", "logprobs", "max_tokens", "presence_penalty", "response_format",
  "seed", "stop", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "parallel_tool_calls"];

function snippet(lang, i) {
  const req = buildRequest(i, false);
  if (!req.model) req.model = "local";
  const base = location.origin;
  const stream = !!req.stream;
  const pyKey = keysRequired ? 'os.environ["CONSTRAIN_API_KEY"]' : '"unused"';
  const jsKey = keysRequired ? "process.env.CONSTRAIN_API_KEY" : '"unused"';
  if (lang === "python-hf" || lang === "python-openai") {
    const hf = lang === "python-hf";
    const [known, extra] = split(req, hf ? HF_NATIVE : OPENAI_NATIVE);
    if (Object.keys(extra).length) known.extra_body = extra;
    const head = hf
      ? `from huggingface_hub import InferenceClient\n\nclient = InferenceClient(base_url=${JSON.stringify(base)}, api_key=${pyKey})\n`
      : `from openai import OpenAI\n\nclient = OpenAI(base_url=${JSON.stringify(base + "/v1")}, api_key=${pyKey})\n`;
    const call = hf ? "client.chat_completion" : "client.chat.completions.create";
    const imports = keysRequired ? "import os\n\n" : "";
    const body = `${call}(\n${pyKwargs(known, "    ")}\n)`;
    const tail = stream
      ? `for chunk in ${body}:\n    if chunk.choices:\n        print(chunk.choices[0].delta.content or "", end="", flush=True)\nprint()\n`
      : `out = ${body}\nmessage = out.choices[0].message\nprint(message.content if message.content is not None else message.tool_calls)\n`;
    return imports + head + tail;
  }
  const json = JSON.stringify(req, null, 2);
  if (lang === "js-fetch") {
    const auth = keysRequired ? `,\n    authorization: \`Bearer \${${jsKey}}\`` : "";
    const readOut = stream
      ? `const reader = res.body.getReader();\nconst decoder = new TextDecoder();\nlet buffer = "";\nfor (;;) {\n  const {value, done} = await reader.read();\n  if (done) break;\n  buffer += decoder.decode(value, {stream: true});\n  const events = buffer.split("\\n\\n");\n  buffer = events.pop();\n  for (const event of events) {\n    const data = event.replace(/^data: /, "");\n    if (data === "[DONE]") break;\n    const chunk = JSON.parse(data);\n    if (chunk.choices.length) process.stdout.write(chunk.choices[0].delta.content ?? "");\n  }\n}\nconsole.log();\n`
      : `const out = await res.json();\nconsole.log(out.choices[0].message.content ?? out.choices[0].message.tool_calls);\n`;
    return `const res = await fetch(${JSON.stringify(base + "/v1/chat/completions")}, {\n  method: "POST",\n  headers: {\n    "content-type": "application/json"${auth}\n  },\n  body: JSON.stringify(${json.replace(/\n/g, "\n  ")}),\n});\n${readOut}`;
  }
  if (lang === "js-openai") {
    const readOut = stream
      ? `for await (const chunk of out) {\n  if (chunk.choices.length) process.stdout.write(chunk.choices[0].delta.content ?? "");\n}\nconsole.log();\n`
      : `console.log(out.choices[0].message.content ?? out.choices[0].message.tool_calls);\n`;
    return `import OpenAI from "openai";\n\nconst client = new OpenAI({baseURL: ${JSON.stringify(base + "/v1")}, apiKey: ${jsKey}});\nconst out = await client.chat.completions.create(${json});\n${readOut}`;
  }
  const quoted = "'" + JSON.stringify(req).replace(/'/g, "'\\''") + "'";
  const auth = keysRequired ? ` \\\n  -H "authorization: Bearer $CONSTRAIN_API_KEY"` : "";
  return `curl -s${stream ? "N" : ""} ${base}/v1/chat/completions \\\n  -H 'content-type: application/json'${auth} \\\n  -d ${quoted}\n`;
}

function renderCode() {
  $("#code-lang").value = state.lang;
  $("#code-pane").value = String(state.codePane);
  $("#code-pane").disabled = !state.compare;
  $("#code-text").textContent = snippet(state.lang, state.compare ? state.codePane : 0);
}

function setView(view) {
  state.view = view;
  save();
  $("#ui-view").hidden = view !== "ui";
  $("#code-view").hidden = view !== "code";
  $("#view-ui").setAttribute("aria-pressed", String(view === "ui"));
  $("#view-code").setAttribute("aria-pressed", String(view === "code"));
  if (view === "code") renderCode();
}

async function copyCode() {
  const text = $("#code-text").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) { // no clipboard permission: select the text for Ctrl+C
    const range = document.createRange();
    range.selectNodeContents($("#code-text"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
  status("copied");
}

// ----------------------------------------------------------------------------- start

function shareLink() {
  const link = `${location.origin}${location.pathname}#s=${b64urlEncode(JSON.stringify(state))}`;
  navigator.clipboard.writeText(link).catch(() => {});
  status("link copied");
  $("#share").dataset.link = link;
  return link;
}

function wire() {
  $("#system").value = state.system;
  $("#system").addEventListener("input", (e) => { state.system = e.target.value; save(); });
  $("#compare").checked = state.compare;
  $("#compare").addEventListener("change", (e) => { state.compare = e.target.checked; save(); renderPanes(); });
  $("#add-message").addEventListener("click", addMessage);
  $("#generate").addEventListener("click", generate);
  $("#stop").addEventListener("click", () => { for (const c of running) c.abort(); });
  $("#new-content").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); } });
  $("#view-ui").addEventListener("click", () => setView("ui"));
  $("#view-code").addEventListener("click", () => setView("code"));
  $("#code-lang").addEventListener("change", (e) => { state.lang = e.target.value; save(); renderCode(); });
  $("#code-pane").addEventListener("change", (e) => { state.codePane = Number(e.target.value); save(); renderCode(); });
  $("#copy-code").addEventListener("click", copyCode);
  $("#share").addEventListener("click", shareLink);
  $("#reset").addEventListener("click", () => { state = defaultState(); results[0] = results[1] = null; save(); start(); });
  $("#key-button").addEventListener("click", askKey);
  $("#key-form").addEventListener("submit", (e) => {
    const key = $("#api-key").value;
    $("#api-key").value = ""; // the key lives in sessionStorage only, not in the page
    if (e.submitter && e.submitter.value === "save" && key) {
      sessionStorage.setItem(KEY_STORE, key);
      loadModels();
    }
  });
}

async function start() {
  document.body.dataset.ready = "false";
  $("#system").value = state.system;
  $("#compare").checked = state.compare;
  renderMessages();
  renderPanes();
  setView(state.view);
  await loadGrammars(); // before the panes are rebuilt with the models' names
  await loadModels();
  if (state.view === "code") renderCode();
  document.body.dataset.ready = "true";
}

loadState();
wire();
start();
