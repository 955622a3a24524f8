// The answer's sources: the citations Claude made (web search results, say), one link per
// URL under the answer. URLs come from the model's tools, so they are untrusted: only http
// and https become links, and everything reaches the DOM as text or attributes, never HTML.

// `url` if it is an http or https URL, else null (javascript:, data:, a relative path…).
export function webUrl(url) {
  if (typeof url !== "string") return null;
  try {
    const { protocol } = new URL(url);
    return protocol === "http:" || protocol === "https:" ? url : null;
  } catch {
    return null;
  }
}

// A link that opens apart from the page, or the bare text when `url` is not a web URL.
export function link(url, text) {
  const href = webUrl(url);
  if (!href) return document.createTextNode(text || String(url ?? ""));
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text || href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

// A `citation` frame for `turn` (an answer): kept once per URL; citations of documents the
// caller sent (no URL) have nothing to link to.
export function addCitation(turn, citation) {
  const url = webUrl(citation.url);
  if (!url) return;
  turn.sources ??= [];
  if (turn.sources.some((s) => s.url === url)) return;
  turn.sources.push({ url, title: typeof citation.title === "string" ? citation.title : "" });
}

export function sourcesSection() {
  const section = document.createElement("section");
  section.className = "sources";
  section.setAttribute("aria-label", "Sources");
  section.hidden = true;
  return section;
}

// Bring `section` (the answer's sources) up to date with `turn`.
export function renderSources(section, turn) {
  const sources = turn.sources ?? [];
  section.hidden = sources.length === 0;
  if (!sources.length) return;
  const heading = document.createElement("h4");
  heading.textContent = "Sources";
  const list = document.createElement("ol");
  for (const source of sources) {
    const item = document.createElement("li");
    item.append(link(source.url, source.title));
    list.append(item);
  }
  section.replaceChildren(heading, list);
}
