// Images and PDFs: attached by button, paste or drag-and-drop, shown in a tray until sent,
// sent as content blocks, shown in the transcript (a thumbnail, a chip for a PDF). Images are
// downscaled here to at most 1568 px on the long edge (the API would scale them down anyway:
// fewer bytes to send and fewer tokens). The saved conversation keeps a placeholder (name,
// type, size), not the data: localStorage holds a few MB at most.
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const PDF = "application/pdf";
const LONG_EDGE = 1568;
const IMAGE_LIMIT = 5 * 1024 * 1024; // the API's, on the base64 text
const BODY_LIMIT = 32 * 1024 * 1024; // the API's request limit (MAX_BODY_BYTES by default)

// A file: {name, type, size (bytes sent), data (base64; this page's memory only), url (an
// object URL for the thumbnail)}. After a reload only {name, type, size} is left.
let tray = [];
let trayView = null;
let status = null;

export function setUpAttachments({ button, input, list, prompt, message, dropZone }) {
  trayView = list;
  status = message;
  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = ""; // the same file may be chosen again
  });
  prompt.addEventListener("paste", (e) => {
    if (e.clipboardData?.files.length) {
      e.preventDefault(); // a pasted screenshot is an attachment, not text
      addFiles(e.clipboardData.files);
    }
  });
  dropZone.addEventListener("dragover", (e) => {
    if (e.dataTransfer?.types.includes("Files")) e.preventDefault(); // allows the drop
  });
  dropZone.addEventListener("drop", (e) => {
    if (!e.dataTransfer?.files.length) return;
    e.preventDefault(); // or the browser would open the file in place of the page
    addFiles(e.dataTransfer.files);
  });
}

// What the tray holds, for a new user turn; the tray empties.
export function takeAttached() {
  const files = tray.filter((f) => f.data);
  tray = [];
  renderTray();
  return files;
}

export function attaching() {
  return tray.some((f) => !f.data);
}

// A user turn's content for the relay: its text, or blocks when it carries files. A file
// lost with a reload is said in words, so the conversation still reads right.
export function contentOf(turn) {
  if (!turn.files?.length) return turn.text;
  const blocks = turn.files.map((f) => {
    if (!f.data) return { type: "text", text: `[${f.name}: attached earlier, not kept]` };
    const source = { type: "base64", media_type: f.type, data: f.data };
    return f.type === PDF ? { type: "document", source } : { type: "image", source };
  });
  return turn.text ? [...blocks, { type: "text", text: turn.text }] : blocks;
}

// JSON.stringify's replacer for the saved conversation: files without their data or object
// URLs (only files': an answer's tool results and sources keep their URLs).
export function withoutData(key, value) {
  if (key !== "files" || !Array.isArray(value)) return value;
  return value.map(({ data, url, ...kept }) => kept);
}

// A user turn's files in the transcript.
export function filesView(turn) {
  const box = document.createElement("div");
  box.className = "files";
  for (const file of turn.files ?? []) box.append(fileView(file));
  return box;
}

function fileView(file) {
  if (file.url) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = file.url;
    img.alt = file.name;
    return img;
  }
  const chip = document.createElement("span");
  chip.className = file.type === PDF ? "chip pdf" : "chip";
  const kept = file.data ? "" : " · not kept";
  chip.textContent = `${file.type === PDF ? "PDF" : "Image"}: ${file.name} · ${megabytes(file.size)}${kept}`;
  return chip;
}

function megabytes(n) {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`;
}

async function addFiles(list) {
  // A copy, taken now: the input's (or the event's) list is emptied once the event is over.
  const files = [...list];
  status.textContent = "";
  for (const original of files) {
    const file = { name: original.name || "pasted", type: original.type, size: original.size };
    tray.push(file);
    renderTray();
    try {
      await prepare(file, original);
    } catch (err) {
      tray = tray.filter((f) => f !== file);
      status.textContent = `${file.name}: ${err.message}`;
    }
    renderTray();
  }
}

async function prepare(file, original) {
  if (original.type === PDF) {
    if (original.size * 4 / 3 > BODY_LIMIT) throw new Error("too large (32 MB at most)");
    file.data = await base64Of(original);
    return;
  }
  if (!IMAGE_TYPES.includes(original.type)) {
    throw new Error("only PNG, JPEG, GIF and WebP images, and PDFs, can be attached");
  }
  const blob = await downscaled(original);
  file.type = blob.type;
  file.size = blob.size;
  file.data = await base64Of(blob);
  if (file.data.length > IMAGE_LIMIT) throw new Error("too large, even scaled down");
  file.url = URL.createObjectURL(blob);
}

// The image itself when it fits, else a copy at most LONG_EDGE px on its long edge, in its
// own type (a GIF as PNG: a canvas cannot write GIFs); as JPEG if that is still too large.
async function downscaled(original) {
  const bitmap = await createImageBitmap(original);
  const scale = Math.min(1, LONG_EDGE / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && original.size * 4 / 3 <= IMAGE_LIMIT) return original;
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const type = original.type === "image/gif" ? "image/png" : original.type;
  let blob = await encode(canvas, type);
  if (blob.size * 4 / 3 > IMAGE_LIMIT) blob = await encode(canvas, "image/jpeg");
  return blob;
}

function encode(canvas, type) {
  return new Promise((resolve) => canvas.toBlob(resolve, type, 0.9));
}

function base64Of(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(new Error("could not be read"));
    reader.readAsDataURL(blob);
  });
}

function renderTray() {
  trayView.replaceChildren(
    ...tray.map((file) => {
      const li = document.createElement("li");
      li.append(file.data ? fileView(file) : pendingView(file));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "quiet remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      remove.addEventListener("click", () => {
        tray = tray.filter((f) => f !== file);
        if (file.url) URL.revokeObjectURL(file.url);
        renderTray();
      });
      li.append(remove);
      return li;
    }),
  );
  trayView.hidden = tray.length === 0;
}

function pendingView(file) {
  const chip = document.createElement("span");
  chip.className = "chip";
  chip.textContent = `${file.name}…`;
  return chip;
}
