// Model output is untrusted text: Markdown is rendered by marked and the result is
// sanitized by DOMPurify before it touches the DOM. Nothing the model writes can run.
import { marked } from "./vendor/marked-18.2.1.esm.js";
import DOMPurify from "./vendor/purify-3.4.18.es.js";

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

marked.use({
  gfm: true,
  renderer: {
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
  FORBID_TAGS: ["style", "img", "video", "audio", "iframe", "form", "input", "button"],
};

export function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(text, { async: false }), PURIFY);
}
