// Hand-written helper for pages that embed ipywidgets state. myst-nb loads it just before the
// vendored require.js and embed-amd.js (see nb_ipywidgets_js in _config.yml).

// 1. RequireJS configuration, read by require.js when it loads. The bundles inside embed-amd.js
//    compute the URL of their icon fonts from the URL RequireJS gives their module (e.g.
//    "@jupyter-widgets/controls" or "@jupyter-widgets/html-manager/dist/libembed-amd"); by
//    default that is relative to the page (and 404s), so map each to the folder holding the
//    vendored embed-amd.js and its fonts. These modules are all defined inside embed-amd.js, so
//    nothing is fetched from these paths.
(function () {
  const here = new URL("vendor/jupyter-widgets/", document.currentScript.src).href;
  const paths = {"@jupyter-widgets/html-manager/dist": here.replace(/\/$/, "")};
  for (const name of ["base", "base7", "controls", "controls7", "html-manager"]) {
    paths["@jupyter-widgets/" + name] = here + name;
  }
  window.require = {paths: paths};
})();

// 2. MathJax. The widgets typeset their labels with the MathJax 2 call
//    `MathJax.Hub.Queue(["Typeset", MathJax.Hub, node])` whenever a `MathJax` global exists; the
//    book loads MathJax 3, which has no `Hub`, so that call threw on every widget page. Give
//    MathJax 3 a `Hub.Queue` that typesets the nodes with the MathJax 3 API. MathJax is loaded
//    with `defer`, so it exists at DOMContentLoaded, before the widgets render (on load).
document.addEventListener("DOMContentLoaded", function () {
  const mj = window.MathJax;
  if (!mj || mj.Hub) return;
  mj.Hub = {
    Queue: function (...jobs) {
      const nodes = jobs.filter((j) => Array.isArray(j) && j[0] === "Typeset" && j[2]).map((j) => j[2]);
      const ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
      ready.then(() => mj.typesetPromise && mj.typesetPromise(nodes)).catch((e) => console.warn(e));
    },
  };
});

// 3. Alt text. Images drawn by a widget from its stored state (e.g. a plot in an Output widget)
//    come without alt text. Chapters show the widget's default state as a normal output first,
//    in the same cell or in a cell above it in the same section, and the stored widget state is
//    that same default: give the widget's image the alt text of that static figure (the nearest
//    one), or a generic description when there is none.
(function () {
  const FALLBACK = "Figure drawn by the interactive widget at the settings stored with the notebook.";
  function staticAlt(cell) {
    // (an alt that is a file name is docutils' stand-in for a missing one)
    const img = Array.from(cell.querySelectorAll(".cell_output img[alt]"))
      .find((other) => !other.closest(".widget-subarea") && other.getAttribute("alt").trim() &&
                       !/\.(png|jpe?g|gif|svg|webp)$/i.test(other.getAttribute("alt").trim()));
    return img ? img.getAttribute("alt") : null;
  }
  function describe(img) {
    if (img.getAttribute("alt") || !img.closest(".widget-subarea")) return;
    let alt = null;
    for (let cell = img.closest(".cell"); cell && !alt; cell = cell.previousElementSibling) {
      if (cell.classList.contains("cell")) alt = staticAlt(cell);
    }
    img.setAttribute("alt", alt ? "Widget view at its stored settings: " + alt : FALLBACK);
  }
  function scan(node) {
    if (node.tagName === "IMG") describe(node);
    else if (node.querySelectorAll) node.querySelectorAll("img").forEach(describe);
  }
  new MutationObserver((mutations) => {
    for (const m of mutations) m.addedNodes.forEach(scan);
  }).observe(document.documentElement, {childList: true, subtree: true});
})();
