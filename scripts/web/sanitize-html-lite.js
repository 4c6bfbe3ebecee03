// Stands in for the npm package sanitize-html inside the book's widget bundle (esbuild
// --alias, scripts/vendor_web_assets.sh). @jupyter-widgets/base-manager calls it only to clean a
// widget description written as HTML (description_allow_html=True), with a list of allowed tags
// and attributes; sanitize-html brings htmlparser2, postcss and entities (250 kB minified) for
// that. The browser's own HTML parser does the parsing here; the rules follow sanitize-html's
// defaults: a tag not allowed is dropped but its text kept (script, style, textarea, option and
// noscript are dropped with their content), attributes not allowed are dropped, and URLs keep
// only the http, https, ftp, mailto and tel schemes (or none).
const DROP_WITH_CONTENT = new Set(["script", "style", "textarea", "option", "noscript"]);
const URL_ATTRIBUTES = new Set(["href", "src", "cite", "action"]);
const SAFE_SCHEME = /^(?:https?|ftp|mailto|tel):/i;

function attributeAllowed(tag, name, allowed) {
  const names = [...(allowed["*"] || []), ...(allowed[tag] || [])];
  return names.some((pattern) => (pattern.endsWith("*")
    ? name.startsWith(pattern.slice(0, -1)) : name === pattern));
}

function urlAllowed(value) {
  const url = value.trim().replace(/[\u0000-\u0020]/g, "");
  const scheme = url.match(/^[a-z][a-z0-9+.-]*:/i);
  return !scheme || SAFE_SCHEME.test(url);
}

function clean(node, options, out) {
  for (const child of Array.from(node.childNodes)) {
    if (child.nodeType === Node.TEXT_NODE) {
      out.appendChild(document.createTextNode(child.textContent));
      continue;
    }
    if (child.nodeType !== Node.ELEMENT_NODE) continue;
    const tag = child.tagName.toLowerCase();
    if (DROP_WITH_CONTENT.has(tag)) continue;
    if (!options.allowedTags.includes(tag)) {
      clean(child, options, out);
      continue;
    }
    const copy = document.createElement(tag);
    for (const attr of Array.from(child.attributes)) {
      const name = attr.name.toLowerCase();
      if (!attributeAllowed(tag, name, options.allowedAttributes || {})) continue;
      if (URL_ATTRIBUTES.has(name) && !urlAllowed(attr.value)) continue;
      copy.setAttribute(name, attr.value);
    }
    clean(child, options, copy);
    out.appendChild(copy);
  }
  return out;
}

export default function sanitize(html, options) {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html");
  const holder = document.createElement("div");
  clean(doc.body, options, holder);
  return holder.innerHTML;
}
