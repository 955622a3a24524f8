// Model output is untrusted text. Markdown is rendered by marked; raw HTML the model
// writes is shown as text, not rendered; the result is sanitized by DOMPurify anyway
// before it touches the DOM. Nothing the model writes can run, style or fetch.
import { marked } from "./vendor/marked-18.2.1.esm.js";
import DOMPurify from "./vendor/purify-3.4.18.es.js";

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

marked.use({
  gfm: true,
  renderer: {
    // Shown, not rendered: the model's HTML never reaches a parser, so even the page's
    // CSP never sees (and reports) the handlers and styles it may carry.
    html({ text }) {
      return escapeHtml(text);
    },
    // An <img> would make the page fetch from anywhere the model names: show a link.
    image({ href, text }) {
      return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const PURIFY = {
  // Inline styles would break the page's CSP (and its look); media would fetch.
  FORBID_ATTR: ["style"],
  FORBID_TAGS: ["style", "img", "svg", "math", "video", "audio", "iframe", "form", "input", "button"],
};

export function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(text, { async: false }), PURIFY);
}
