// Renders the ipywidgets state that myst-nb embeds in a page, with no kernel. Built by
// scripts/vendor_web_assets.sh (esbuild, from the npm packages pinned in package-lock.json) into
// book/_static/vendor/widgets/widget-manager.js, which _config.yml (nb_ipywidgets_js) loads on
// pages that carry widget state, and on no other page.
//
// It replaces @jupyter-widgets/html-manager's embed-amd.js (3.6 MB: it also bundles JupyterLab's
// rendermime and output area, ipywidgets 7's controls, Font Awesome, a JSON-schema validator and
// needs RequireJS). This one holds only what the book's widgets use: @jupyter-widgets/base and
// @jupyter-widgets/controls (ipywidgets 8: every control, the boxes, Stack, jslink) and a small
// renderer for the stored outputs of an Output widget. A widget from any other module is shown
// as an error view and logged to the console, which tests/test_browser.py reports.
//
// Also, for the book's pages (formerly book/_static/widgets.js):
// - Accessible names: a slider's handle (role="slider") and any input without a label get the
//   widget's description as their aria-label; images drawn from an Output widget's stored state
//   get the alt text of the static figure shown above them (state_picker figures carry their own).
import * as base from "@jupyter-widgets/base";
import { ManagerBase } from "@jupyter-widgets/base-manager";
import * as controls from "@jupyter-widgets/controls";
import { MessageLoop } from "@lumino/messaging";
import { Widget } from "@lumino/widgets";

const STATE_MIME = "application/vnd.jupyter.widget-state+json";
const VIEW_MIME = "application/vnd.jupyter.widget-view+json";
const HERE = document.currentScript ? document.currentScript.src : document.baseURI;

// ---------------------------------------------------------------------------------------------
// The Output widget: its stored outputs, drawn once (no kernel ever appends to them here).

class OutputModel extends base.DOMWidgetModel {
  defaults() {
    return {
      ...super.defaults(),
      _model_name: "OutputModel", _view_name: "OutputView",
      _model_module: "@jupyter-widgets/output", _view_module: "@jupyter-widgets/output",
      _model_module_version: "1.0.0", _view_module_version: "1.0.0",
      msg_id: "", outputs: [],
    };
  }
}

function joined(text) {
  return Array.isArray(text) ? text.join("") : String(text || "");
}

function outputElement(output) {
  if (output.output_type === "stream") {
    const pre = document.createElement("pre");
    pre.textContent = joined(output.text);
    return pre;
  }
  if (output.output_type === "error") {
    const pre = document.createElement("pre");
    pre.textContent = `${output.ename}: ${output.evalue}`;
    return pre;
  }
  const data = output.data || {};
  for (const mime of ["image/png", "image/jpeg"]) {
    if (data[mime]) {
      const img = document.createElement("img");
      img.src = `data:${mime};base64,${joined(data[mime]).replace(/\s/g, "")}`;
      return img;
    }
  }
  if (data["text/html"]) {
    const div = document.createElement("div");
    div.innerHTML = joined(data["text/html"]);  // the book's own executed notebooks
    return div;
  }
  const pre = document.createElement("pre");
  pre.textContent = joined(data["text/plain"]);
  return pre;
}

class OutputView extends base.DOMWidgetView {
  render() {
    this.el.classList.add("jupyter-widgets", "widget-output");
    this.listenTo(this.model, "change:outputs", this.update);
    this.update();
  }

  update() {
    this.el.replaceChildren(...this.model.get("outputs").map(outputElement));
    return super.update();
  }
}

const MODULES = {
  "@jupyter-widgets/base": { major: 2, exports: base },
  "@jupyter-widgets/controls": { major: 2, exports: controls },
  "@jupyter-widgets/output": { major: 1, exports: { OutputModel, OutputView } },
};

// ---------------------------------------------------------------------------------------------
// The manager: models from the stored state, views attached where the page asks for them.

class StaticWidgetManager extends ManagerBase {
  constructor() {
    super();
    this.views = new Set();
    window.addEventListener("resize", () => {
      this.views.forEach((v) => MessageLoop.postMessage(v.luminoWidget,
                                                        Widget.ResizeMessage.UnknownSize));
    });
  }

  loadClass(className, moduleName, moduleVersion) {
    const module = MODULES[moduleName];
    const major = parseInt(String(moduleVersion).replace(/^[^\d]*/, ""), 10);
    if (!module || major !== module.major) {
      return Promise.reject(new Error(
        `widget module ${moduleName}@${moduleVersion} is not in the book's widget bundle ` +
        "(scripts/web/widget-manager.js renders ipywidgets 8 base, controls and output only)"));
    }
    const cls = module.exports[className];
    return cls ? Promise.resolve(cls)
      : Promise.reject(new Error(`no ${className} in ${moduleName}@${moduleVersion}`));
  }

  async display_view(view, element) {
    let shown;
    try {
      shown = await view;
    } catch (error) {
      console.error("could not create a widget view", error);
      const ErrorModel = base.createErrorWidgetModel(error, "Could not create a view");
      shown = new base.ErrorWidgetView({ model: new ErrorModel() });
      shown.render();
    }
    Widget.attach(shown.luminoWidget, element);
    this.views.add(shown);
    shown.once("remove", () => this.views.delete(shown));
    return shown;
  }

  _get_comm_info() {
    return Promise.resolve({});
  }

  _create_comm() {
    return Promise.resolve({ on_close() {}, on_msg() {}, close() {}, send() {} });
  }
}

async function renderState(stateTag) {
  const manager = new StaticWidgetManager();
  const models = await manager.set_state(JSON.parse(stateTag.textContent));
  const byId = new Map(models.map((m) => [m.model_id, m]));
  const viewTags = document.querySelectorAll(`script[type="${VIEW_MIME}"]`);
  await Promise.all(Array.from(viewTags).map(async (tag) => {
    const model = byId.get(JSON.parse(tag.textContent).model_id);
    if (!model || !tag.parentElement) return;
    const area = document.createElement("div");
    area.className = "widget-subarea";
    tag.parentElement.insertBefore(area, tag);
    await manager.display_view(manager.create_view(model), area);
  }));
}

function renderWidgets() {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL("widget-manager.css", HERE).href;
  document.head.appendChild(link);
  document.querySelectorAll(`script[type="${STATE_MIME}"]`).forEach((tag) => {
    renderState(tag).catch((error) => console.error("could not render the widgets", error));
  });
}

// ---------------------------------------------------------------------------------------------
// Accessible names and alt text for what the widgets draw.

const FALLBACK_ALT =
  "Figure drawn by the interactive widget at the settings stored with the notebook.";

function isFileName(alt) {
  return /\.(png|jpe?g|gif|svg|webp)$/i.test(alt.trim());
}

function staticAlt(cell) {
  const img = Array.from(cell.querySelectorAll(".cell_output img[alt]"))
    .find((other) => !other.closest(".widget-subarea") && other.getAttribute("alt").trim() &&
                     !isFileName(other.getAttribute("alt")));
  return img ? img.getAttribute("alt") : null;
}

function describeImage(img) {
  if (img.getAttribute("alt") || !img.closest(".widget-output")) return;
  let alt = null;
  for (let cell = img.closest(".cell"); cell && !alt; cell = cell.previousElementSibling) {
    if (cell.classList.contains("cell")) alt = staticAlt(cell);
  }
  img.setAttribute("alt", alt ? `Widget view at its stored settings: ${alt}` : FALLBACK_ALT);
}

function nameControl(control) {
  if (control.getAttribute("aria-label") || control.getAttribute("aria-labelledby")) return;
  const labelled = control.id && document.querySelector(`label[for="${CSS.escape(control.id)}"]`);
  if (labelled && control.getAttribute("role") !== "slider") return;
  // The widget's description: the .widget-label of the nearest enclosing control widget.
  let label = null;
  for (let el = control.parentElement; el && !label; el = el.parentElement) {
    if (el.classList.contains("widget-subarea")) break;
    label = el.querySelector(":scope > .widget-label");
  }
  const name = label ? label.textContent.trim() : "";
  if (name) control.setAttribute("aria-label", name);
}

function fixAccessibility(node) {
  if (!node.querySelectorAll) return;
  const area = node.closest ? node.closest(".widget-subarea") : null;
  if (!area && !node.querySelector(".widget-subarea")) return;
  const scope = area || node;
  scope.querySelectorAll("img").forEach(describeImage);
  scope.querySelectorAll("[role='slider'], input, select, textarea").forEach(nameControl);
}

new MutationObserver((mutations) => {
  for (const m of mutations) {
    m.addedNodes.forEach(fixAccessibility);
  }
}).observe(document.documentElement, { childList: true, subtree: true });

if (document.readyState === "complete") renderWidgets();
else window.addEventListener("load", renderWidgets);
