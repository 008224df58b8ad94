// The chat page: keeps the conversation in the browser and sends it whole to the server's
// OpenAI-style endpoint at each turn, reading the answer as server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: "vlm", messages: [], image: null, imageSent: false, busy: false };

function note(text) {
  const div = document.createElement("div");
  div.className = "note";
  div.textContent = text;
  $("log").appendChild(div);
}

function bubble(kind, text) {
  const div = document.createElement("div");
  div.className = "message " + kind;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

function clearConversation() {
  state.messages = [];
  state.imageSent = false;
  $("log").replaceChildren();
}

function showImage(url) {
  state.image = url;
  $("preview").src = url || "";
  $("preview").hidden = !url;
  $("drop-hint").hidden = Boolean(url);
}

const NOT_AN_IMAGE = "That file is not a JPEG or PNG image.";

// Whether the bytes start as a PNG or a JPEG file does, whatever the file's name says.
async function isPngOrJpeg(file) {
  const head = new Uint8Array(await file.slice(0, 8).arrayBuffer());
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => head[i] === b);
  const jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
  return png || jpeg;
}

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// The server takes PNG and JPEG: other images the browser can decode are redrawn as PNG;
// anything else is refused here, in words, before it reaches the server.
async function loadImage(file) {
  if (!file) return;
  let url;
  try {
    const bitmap = await createImageBitmap(file);
    if (await isPngOrJpeg(file)) {
      url = await readDataUrl(file);
    } else {
      const canvas = document.createElement("canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
      url = canvas.toDataURL("image/png");
    }
  } catch (err) {
    $("image-input").value = "";
    bubble("error", NOT_AN_IMAGE);
    return;
  }
  if (state.imageSent) {
    clearConversation();
    note("New image: the conversation starts over (one image per conversation).");
  }
  showImage(url);
}

// What to tell a person about a failed request, rather than the API's wording.
function humanError(status, error) {
  if (error.code === "invalid_image") {
    return "The server could not use that image: choose another JPEG or PNG image, not too large.";
  }
  if (status === 413) return "That image is too large to send: choose a smaller one.";
  if (status === 429 || status === 503) return "The server is busy: try again in a moment.";
  if (status >= 500) return "The server failed to answer: try again.";
  return error.message || "The request failed (" + status + ").";
}

function settings() {
  const body = {
    model: state.model,
    stream: true,
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
  };
  const system = $("system").value.trim();
  body.messages = system ? [{ role: "system", content: system }, ...state.messages] : state.messages;
  return body;
}

// Reads an SSE response, calling onDelta with each piece of text; resolves at [DONE].
async function readStream(response, onDelta) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended early");
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) onDelta(delta.content);
      }
    }
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  const withImage = state.image && !state.imageSent;
  const content = withImage
    ? [{ type: "image_url", image_url: { url: state.image } }, { type: "text", text }]
    : text;
  state.messages.push({ role: "user", content });
  state.imageSent = state.imageSent || Boolean(withImage);
  const user = bubble("user", "");
  if (withImage) {
    const img = document.createElement("img");
    img.src = state.image;
    user.appendChild(img);
  }
  user.appendChild(document.createTextNode(text));
  $("prompt").value = "";
  const answer = bubble("assistant", "");
  answer.dataset.done = "false";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(settings()),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(humanError(response.status, body.error || {}));
    }
    await readStream(response, (piece) => {
      answer.textContent += piece;
      $("log").scrollTop = $("log").scrollHeight;
    });
    if (answer.textContent.trim()) {
      state.messages.push({ role: "assistant", content: answer.textContent });
    } else {
      forgetLastQuestion(withImage);
      note("(empty answer: the question is not kept in the conversation)");
    }
  } catch (err) {
    forgetLastQuestion(withImage);
    answer.remove();
    const unreachable = err instanceof TypeError;
    bubble("error", unreachable ? "The server cannot be reached: is it still running?" : err.message);
  } finally {
    answer.dataset.done = "true";
    state.busy = false;
    $("send").disabled = false;
  }
}

function forgetLastQuestion(withImage) {
  state.messages.pop();
  if (withImage) state.imageSent = false;
}

$("ask").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) send(event);
});
$("image-input").addEventListener("change", (event) => loadImage(event.target.files[0]));
$("clear").addEventListener("click", () => {
  clearConversation();
  showImage(null);
  $("image-input").value = "";
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) loadImage(item.getAsFile());
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  loadImage(event.dataTransfer.files[0]);
});
// On a narrow screen the settings start folded, leaving the room to the chat.
const NARROW = "(max-width: 700px)";
if (window.matchMedia(NARROW).matches) $("settings-box").open = false;
fetch("/v1/models").then((r) => r.json()).then((list) => {
  state.model = list.data[0].id;
  $("model-name").textContent = state.model;
}).catch(() => {});
